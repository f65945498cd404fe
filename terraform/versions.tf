terraform {
  # 1.9: validation conditions may refer to other variables.
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }

  # State is local by default. For a team, keep it in S3 with locking, e.g.:
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "echo-gateway/terraform.tfstate"
  #   region       = "us-east-1"
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({
      Project   = "echo-gateway"
      Service   = var.name
      ManagedBy = "terraform"
    }, var.tags)
  }
}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only the first az_count zones in name order are used (slice in locals), so a zone AWS adds later does not change the subnets; var.availability_zones pins exact zones.
  state = "available"
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  azs        = length(var.availability_zones) > 0 ? var.availability_zones : slice(data.aws_availability_zones.available.names, 0, var.az_count)
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  # What the gateway publishes with ECHO_EMF=1 (src/emf.rs): one line a
  # minute per task, metric Requests (Count) with dimension ServiceName.
  emf_namespace = "EchoGateway"
  emf_metric    = "Requests"
  emf_dimension = "ServiceName"

  container_name = "gateway"
  mock_port      = 8080 # the gateway's mock listener in the container
  admin_port     = 9090 # ECHO_ADMIN_LISTEN in the container
  data_dir       = "/var/lib/echo-gateway/data"

  tls = var.certificate_arn != ""
}
