# ---------------------------------------------------------------- general

variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name of the service: prefix of every resource name, the ECS service name, and the value of the EMF dimension ServiceName (ECHO_SERVICE_NAME) that autoscaling tracks. Lowercase letters, digits and hyphens."
  type        = string
  default     = "echo-gateway"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}$", var.name))
    error_message = "name: 2 to 23 characters, lowercase letters, digits and hyphens, starting with a letter (it becomes part of load balancer and cache names)."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------- network

variable "vpc_cidr" {
  description = "CIDR block of the VPC. Public and private /20 subnets are carved out of it, one of each per availability zone."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Number of availability zones to spread subnets, NAT and tasks over (at least 2)."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be between 2 and 4."
  }
}

variable "availability_zones" {
  description = "Exact availability zones to use, e.g. [\"us-east-1a\", \"us-east-1b\"] (as many as az_count). Empty: the first az_count available zones of the region in name order."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) == var.az_count
    error_message = "availability_zones must be empty or name exactly az_count zones."
  }
}

variable "single_nat_gateway" {
  description = "true: one NAT gateway for all private subnets (cheaper; egress to ECR, logs and Secrets Manager depends on one AZ). false: one NAT gateway per AZ."
  type        = bool
  default     = true
}

variable "flow_log_traffic_type" {
  description = "Which traffic VPC flow logs record: REJECT (cheapest), ACCEPT or ALL."
  type        = string
  default     = "REJECT"

  validation {
    condition     = contains(["ACCEPT", "REJECT", "ALL"], var.flow_log_traffic_type)
    error_message = "flow_log_traffic_type must be ACCEPT, REJECT or ALL."
  }
}

# ---------------------------------------------------------------- load balancer

variable "mock_listener_port" {
  description = "Port of the NLB's TCP listener for mocks (forwarded to the gateway's port 8080)."
  type        = number
  default     = 80
}

variable "admin_listener_port" {
  description = "Port of the NLB's listener for the admin API (forwarded to the gateway's admin listener on 9090)."
  type        = number
  default     = 9090
}

variable "mock_allowed_cidrs" {
  description = "IPv4 CIDR blocks allowed to call mocks through the NLB."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "admin_allowed_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the admin API listener, e.g. [\"203.0.113.7/32\"]. Empty: the admin API is not reachable from outside the VPC."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.admin_allowed_cidrs, "0.0.0.0/0")
    error_message = "admin_allowed_cidrs must not contain 0.0.0.0/0: give the admin API to known addresses only."
  }
}

variable "certificate_arn" {
  description = "ACM certificate ARN. When set, the admin listener terminates TLS at the NLB and a TLS listener on 443 serves mocks too. Empty: plain TCP (the admin token then crosses the network in clear text: keep admin_allowed_cidrs narrow)."
  type        = string
  default     = ""
}

variable "deletion_protection" {
  description = "Protect the NLB against deletion (terraform destroy then fails until it is turned off)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------- gateway and tasks

variable "image" {
  description = "Full image reference to run. Empty: the ECR repository created here, tagged image_tag."
  type        = string
  default     = ""
}

variable "image_tag" {
  description = "Tag of the image in the ECR repository (tags are immutable: use a new tag, e.g. the git commit, for every build)."
  type        = string
  default     = "0.1.0"
}

variable "task_cpu" {
  description = "Fargate task CPU units (256 = 0.25 vCPU)."
  type        = number
  default     = 512
}

variable "task_memory" {
  description = "Fargate task memory in MiB (must fit task_cpu)."
  type        = number
  default     = 1024
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64 (Graviton, about 20% cheaper: build the image for linux/arm64)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "shutdown_grace_secs" {
  description = "The gateway's [server] shutdown_grace_secs in the image's config (config/echo.toml: 10). Only used to check deregistration_delay_secs and stop_timeout_secs against it."
  type        = number
  default     = 10
}

variable "deregistration_delay_secs" {
  description = "Seconds the NLB keeps draining a task that leaves. Shorter than shutdown_grace_secs, so that the gateway is still serving while the NLB drains it."
  type        = number
  default     = 5

  validation {
    condition     = var.deregistration_delay_secs >= 0 && var.deregistration_delay_secs < var.shutdown_grace_secs
    error_message = "deregistration_delay_secs must be at least 0 and shorter than shutdown_grace_secs."
  }
}

variable "stop_timeout_secs" {
  description = "Seconds ECS waits after SIGTERM before SIGKILL. Longer than shutdown_grace_secs, so that the graceful shutdown is never cut short (Fargate allows up to 120)."
  type        = number
  default     = 30

  validation {
    condition     = var.stop_timeout_secs > var.shutdown_grace_secs && var.stop_timeout_secs <= 120
    error_message = "stop_timeout_secs must be longer than shutdown_grace_secs and at most 120."
  }
}

variable "upstream_egress_cidrs" {
  description = "CIDR blocks the tasks may open TCP connections to on any port (pass-through upstreams). Tasks can always reach HTTPS (443) for ECR, CloudWatch Logs and Secrets Manager, and Redis when enabled."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------- scaling

variable "min_tasks" {
  description = "Fewest tasks (also the count the service starts with). 2 or more keeps one per AZ."
  type        = number
  default     = 2

  validation {
    condition     = var.min_tasks >= 1
    error_message = "min_tasks must be at least 1."
  }
}

variable "max_tasks" {
  description = "Most tasks autoscaling may run."
  type        = number
  default     = 10

  validation {
    condition     = var.max_tasks >= var.min_tasks
    error_message = "max_tasks must be at least min_tasks."
  }
}

variable "requests_per_task_target" {
  description = "Target tracking: requests per second per task (from the EMF metric EchoGateway/Requests) that autoscaling keeps the service at. Measure a task's capacity with a load test and take about half."
  type        = number
  default     = 500
}

variable "cpu_target_percent" {
  description = "Target tracking safety net: average CPU utilization of the service, in percent."
  type        = number
  default     = 70
}

variable "scale_out_cooldown_secs" {
  description = "Seconds after a scale-out before another one."
  type        = number
  default     = 60
}

variable "scale_in_cooldown_secs" {
  description = "Seconds after a scale-in before another one."
  type        = number
  default     = 300
}

# ---------------------------------------------------------------- store

variable "enable_redis" {
  description = "Create an ElastiCache Redis replication group and run the gateway with ECHO_STORE=redis, so that every task serves the same runtime mocks. false: each task keeps its own runtime mocks (embedded store on task storage, lost when the task stops); mocks from config files are the same everywhere."
  type        = bool
  default     = false
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.micro"
}

variable "redis_num_cache_clusters" {
  description = "Redis nodes: 1 primary + replicas, spread over the AZs, with Multi-AZ automatic failover (so at least 2)."
  type        = number
  default     = 2

  validation {
    condition     = var.redis_num_cache_clusters >= 2 && var.redis_num_cache_clusters <= 6
    error_message = "redis_num_cache_clusters must be between 2 and 6 (a primary and at least one replica, for failover)."
  }
}

variable "redis_engine_version" {
  description = "Redis engine version."
  type        = string
  default     = "7.1"
}

# ---------------------------------------------------------------- secrets

variable "admin_token_secret_arn" {
  description = "ARN of an existing Secrets Manager secret whose string is the admin token, encrypted with the AWS managed key aws/secretsmanager or this stack's key (the execution role may decrypt no other). Empty: a secret with a random 48-character token is created."
  type        = string
  default     = ""
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can be restored (0: deleted at once, 7 to 30)."
  type        = number
  default     = 7
}

# ---------------------------------------------------------------- observability

variable "log_retention_days" {
  description = "Retention of the gateway's and the flow logs' CloudWatch log groups, in days."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

variable "container_insights" {
  description = "Enable Container Insights on the cluster (task counts and per-task CPU and memory on the dashboard; billed as custom metrics)."
  type        = bool
  default     = true
}

variable "alarm_actions" {
  description = "ARNs (e.g. SNS topics) notified when an alarm fires or recovers."
  type        = list(string)
  default     = []
}

variable "cpu_alarm_percent" {
  description = "The CPU alarm fires when the service's average CPU stays above this for 5 minutes."
  type        = number
  default     = 85
}

variable "target_reset_alarm_threshold" {
  description = "The reset alarm fires when targets reset more TCP connections than this in each of 3 minutes."
  type        = number
  default     = 100
}

# ---------------------------------------------------------------- registry

variable "ecr_keep_images" {
  description = "Images kept in the ECR repository; older ones expire."
  type        = number
  default     = 30
}

variable "ecr_force_delete" {
  description = "Let terraform destroy delete the ECR repository with its images."
  type        = bool
  default     = false
}
