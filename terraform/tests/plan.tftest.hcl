# Offline: `terraform test` with a mocked AWS provider (no credentials, no
# API calls) applies the configuration with fake computed values and checks
# what the task definition and the load balancer end up with.
# Run from terraform/: terraform init -backend=false && terraform test

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["us-east-1a", "us-east-1b", "us-east-1c"] }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "us-east-1" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_secretsmanager_random_password" {
    defaults = { random_password = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZab" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{}" }
  }
  mock_resource "aws_ecr_repository" {
    defaults = { repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/echo-gateway" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:echo-gateway/x-AbCdEf" }
  }
  mock_resource "aws_lb" {
    defaults = {
      arn        = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/echo-gateway/0123456789abcdef"
      arn_suffix = "net/echo-gateway/0123456789abcdef"
      dns_name   = "echo-gateway-0123456789.elb.us-east-1.amazonaws.com"
    }
  }
  mock_resource "aws_lb_target_group" {
    defaults = {
      arn        = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/mock-x/0123456789abcdef"
      arn_suffix = "targetgroup/mock-x/0123456789abcdef"
    }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/echo-gateway-role" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/echo-gateway" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_ecs_cluster" {
    defaults = { arn = "arn:aws:ecs:us-east-1:123456789012:cluster/echo-gateway" }
  }
  mock_resource "aws_ecs_task_definition" {
    defaults = { arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/echo-gateway:1" }
  }
  mock_resource "aws_cloudwatch_metric_alarm" {
    defaults = { arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:echo-gateway" }
  }
  mock_resource "aws_elasticache_replication_group" {
    defaults = { primary_endpoint_address = "master.echo-gateway-store.abcdef.use1.cache.amazonaws.com" }
  }
}

run "defaults" {
  command = apply

  assert {
    condition     = aws_lb.main.load_balancer_type == "network"
    error_message = "the load balancer must be an NLB"
  }
  assert {
    condition     = length(aws_subnet.public) == 2 && length(aws_subnet.private) == 2
    error_message = "one public and one private subnet per AZ, 2 AZs by default"
  }
  assert {
    condition     = length(distinct(aws_subnet.private[*].availability_zone)) == 2
    error_message = "the private subnets must be in different AZs"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].stopTimeout > var.shutdown_grace_secs
    error_message = "stopTimeout must be longer than the gateway's shutdown grace"
  }
  assert {
    condition     = aws_lb_target_group.mock.deregistration_delay < var.shutdown_grace_secs
    error_message = "deregistration delay must be shorter than the gateway's shutdown grace"
  }
  assert {
    condition     = [for s in jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].secrets : s.name] == ["ECHO_ADMIN_TOKEN"]
    error_message = "the admin token comes from Secrets Manager, and nothing else without Redis"
  }
  assert {
    condition     = !contains([for e in jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].environment : e.name], "ECHO_ADMIN_TOKEN")
    error_message = "the admin token must not be a plain environment variable"
  }
  assert {
    condition     = !contains([for e in jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].environment : e.name], "ECHO_STORE")
    error_message = "without Redis the image's default store is used"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].image == "123456789012.dkr.ecr.us-east-1.amazonaws.com/echo-gateway:0.1.0"
    error_message = "the image is the ECR repository's, tagged image_tag"
  }
  assert {
    condition     = aws_lb_listener.admin.protocol == "TCP" && length(aws_lb_listener.mock_tls) == 0
    error_message = "without a certificate, plain TCP listeners only"
  }
  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.nlb_admin) == 0
    error_message = "the admin listener is closed until admin_allowed_cidrs is set"
  }
  assert {
    condition     = output.mock_url == "http://echo-gateway-0123456789.elb.us-east-1.amazonaws.com"
    error_message = "mock_url: http and the NLB's DNS name, no port for 80"
  }
  assert {
    condition     = output.admin_url == "http://echo-gateway-0123456789.elb.us-east-1.amazonaws.com:9090"
    error_message = "admin_url: the admin listener's port"
  }
  assert {
    condition     = length(aws_nat_gateway.main) == 1 && length(aws_elasticache_replication_group.redis) == 0
    error_message = "one NAT gateway and no Redis by default"
  }
}

run "redis_tls_and_admin_cidr" {
  command = apply

  variables {
    enable_redis        = true
    single_nat_gateway  = false
    az_count            = 3
    certificate_arn     = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
    admin_allowed_cidrs = ["203.0.113.7/32"]
  }

  assert {
    condition     = contains(jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].environment, { name = "ECHO_STORE", value = "redis" })
    error_message = "with Redis the task runs ECHO_STORE=redis"
  }
  assert {
    condition     = contains([for s in jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].secrets : s.name], "ECHO_REDIS_URL")
    error_message = "the Redis URL (with its AUTH token) comes from Secrets Manager"
  }
  assert {
    condition     = startswith(nonsensitive(aws_secretsmanager_secret_version.redis_url[0].secret_string), "rediss://")
    error_message = "the Redis URL must use TLS (rediss://)"
  }
  assert {
    condition     = aws_elasticache_replication_group.redis[0].transit_encryption_enabled && aws_elasticache_replication_group.redis[0].at_rest_encryption_enabled
    error_message = "Redis must be encrypted in transit and at rest"
  }
  assert {
    condition     = length(aws_nat_gateway.main) == 3 && length(aws_subnet.private) == 3
    error_message = "one NAT gateway and one private subnet per AZ"
  }
  assert {
    condition     = aws_lb_listener.admin.protocol == "TLS" && length(aws_lb_listener.mock_tls) == 1
    error_message = "with a certificate the admin listener and a 443 listener terminate TLS"
  }
  assert {
    condition     = startswith(output.admin_url, "https://")
    error_message = "admin_url is https with a certificate"
  }
  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.nlb_admin) == 1
    error_message = "the admin CIDR opens the admin listener"
  }
}

run "admin_open_to_the_world_is_refused" {
  command = plan

  variables {
    admin_allowed_cidrs = ["0.0.0.0/0"]
  }

  expect_failures = [var.admin_allowed_cidrs]
}

run "deregistration_delay_not_shorter_than_grace_is_refused" {
  command = plan

  variables {
    deregistration_delay_secs = 10
  }

  expect_failures = [var.deregistration_delay_secs]
}
