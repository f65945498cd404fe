# The gateway on ECS Fargate: one service in the private subnets behind both
# target groups, rolled out with the deployment circuit breaker (a failing
# deployment rolls back by itself), scaled by autoscaling.tf.

resource "aws_ecs_cluster" "main" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }
}

resource "aws_security_group" "tasks" {
  name_prefix = "${var.name}-tasks-"
  description = "${var.name} tasks: traffic from the NLB only"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-tasks" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "tasks_mock" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Mocks and health checks from the NLB"
  ip_protocol                  = "tcp"
  from_port                    = local.mock_port
  to_port                      = local.mock_port
  referenced_security_group_id = aws_security_group.nlb.id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_admin" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Admin API and health checks from the NLB"
  ip_protocol                  = "tcp"
  from_port                    = local.admin_port
  to_port                      = local.admin_port
  referenced_security_group_id = aws_security_group.nlb.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  #checkov:skip=CKV_AWS_382:HTTPS only (not all ports): the tasks reach ECR, CloudWatch Logs and Secrets Manager through the NAT gateway, whose addresses are not fixed.
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to AWS APIs (ECR, CloudWatch Logs, Secrets Manager) through NAT"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "tasks_upstreams" {
  for_each = toset(var.upstream_egress_cidrs)

  security_group_id = aws_security_group.tasks.id
  description       = "Pass-through upstreams in ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 0
  to_port           = 65535
  cidr_ipv4         = each.value
}

locals {
  image = var.image != "" ? var.image : "${aws_ecr_repository.gateway.repository_url}:${var.image_tag}"

  # Secrets the execution role may read and inject.
  task_secret_arns = concat(
    [local.admin_token_secret_arn],
    var.enable_redis ? [aws_secretsmanager_secret.redis_url[0].arn] : [],
  )

  environment = concat(
    [
      # The admin API on a listener of its own, behind its own NLB listener.
      { name = "ECHO_ADMIN_LISTEN", value = "0.0.0.0:${local.admin_port}" },
      { name = "ECHO_LOG_FORMAT", value = "json" },
      # One EMF line a minute on stdout: the metric autoscaling tracks.
      { name = "ECHO_EMF", value = "1" },
      { name = "ECHO_SERVICE_NAME", value = var.name },
    ],
    var.enable_redis ? [{ name = "ECHO_STORE", value = "redis" }] : [],
  )

  # From Secrets Manager at task start; never plain text in the definition.
  # ECHO_REDIS_URL is a secret because it carries the Redis AUTH token.
  secrets = concat(
    [{ name = "ECHO_ADMIN_TOKEN", valueFrom = local.admin_token_secret_arn }],
    var.enable_redis ? [{ name = "ECHO_REDIS_URL", valueFrom = aws_secretsmanager_secret.redis_url[0].arn }] : [],
  )
}

resource "aws_ecs_task_definition" "gateway" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # Task storage for the paths the image declares as VOLUMEs (the root file
  # system is read-only): the embedded store's directory and /tmp.
  volume {
    name = "data"
  }
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([
    {
      name      = local.container_name
      image     = local.image
      essential = true

      portMappings = [
        { name = "mock", containerPort = local.mock_port, protocol = "tcp" },
        { name = "admin", containerPort = local.admin_port, protocol = "tcp" },
      ]

      environment = local.environment
      secrets     = local.secrets

      readonlyRootFilesystem = true
      mountPoints = [
        { sourceVolume = "data", containerPath = local.data_dir, readOnly = false },
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]

      healthCheck = {
        command     = ["CMD", "echo-gateway", "healthcheck", "http://127.0.0.1:${local.mock_port}/healthz"]
        interval    = 10
        timeout     = 5
        retries     = 3
        startPeriod = 15
      }

      # SIGTERM starts the gateway's graceful shutdown (shutdown_grace_secs);
      # SIGKILL only comes after stopTimeout, which is longer.
      stopTimeout = var.stop_timeout_secs

      linuxParameters = {
        initProcessEnabled = true
      }

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.gateway.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "gateway"
          mode                  = "non-blocking"
          max-buffer-size       = "4m"
        }
      }
    }
  ])
}

resource "aws_ecs_service" "gateway" {
  name             = var.name
  cluster          = aws_ecs_cluster.main.id
  task_definition  = aws_ecs_task_definition.gateway.arn
  desired_count    = var.min_tasks
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 30

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.mock.arn
    container_name   = local.container_name
    container_port   = local.mock_port
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.admin.arn
    container_name   = local.container_name
    container_port   = local.admin_port
  }

  propagate_tags          = "SERVICE"
  enable_ecs_managed_tags = true

  lifecycle {
    # Autoscaling owns the task count after creation.
    ignore_changes = [desired_count]
  }

  # The target groups must belong to the NLB before the service registers
  # tasks in them, and the role's policy must exist before tasks start.
  depends_on = [
    aws_lb_listener.mock,
    aws_lb_listener.admin,
    aws_iam_role_policy.execution,
  ]
}
