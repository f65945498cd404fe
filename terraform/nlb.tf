# A Network Load Balancer in the public subnets: mocks on a TCP listener
# (var.mock_listener_port -> 8080), the admin API on a listener of its own
# (var.admin_listener_port -> 9090) that only var.admin_allowed_cidrs reach.
# Security groups on the NLB decide who may connect; the tasks accept
# traffic from the NLB only.

resource "aws_security_group" "nlb" {
  name_prefix = "${var.name}-nlb-"
  description = "${var.name} NLB: mocks from mock_allowed_cidrs, admin API from admin_allowed_cidrs"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-nlb" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "nlb_mock" {
  #checkov:skip=CKV_AWS_260:The mock listener is public by design (a mock gateway for clients anywhere); var.mock_allowed_cidrs narrows it.
  for_each = toset(var.mock_allowed_cidrs)

  security_group_id = aws_security_group.nlb.id
  description       = "Mocks from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = var.mock_listener_port
  to_port           = var.mock_listener_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "nlb_mock_tls" {
  for_each = local.tls ? toset(var.mock_allowed_cidrs) : toset([])

  security_group_id = aws_security_group.nlb.id
  description       = "Mocks over TLS from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "nlb_admin" {
  for_each = toset(var.admin_allowed_cidrs)

  security_group_id = aws_security_group.nlb.id
  description       = "Admin API from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = var.admin_listener_port
  to_port           = var.admin_listener_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "nlb_to_tasks_mock" {
  security_group_id            = aws_security_group.nlb.id
  description                  = "Mock traffic and health checks to the tasks"
  ip_protocol                  = "tcp"
  from_port                    = local.mock_port
  to_port                      = local.mock_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "nlb_to_tasks_admin" {
  security_group_id            = aws_security_group.nlb.id
  description                  = "Admin traffic and health checks to the tasks"
  ip_protocol                  = "tcp"
  from_port                    = local.admin_port
  to_port                      = local.admin_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_lb" "main" {
  #checkov:skip=CKV_AWS_91:NLB access logs exist for TLS listeners only; with plain TCP listeners there is nothing to log. The gateway logs requests itself (awslogs).
  #checkov:skip=CKV2_AWS_20:Applies to ALBs: an NLB forwards TCP and cannot redirect HTTP; mocks are plain HTTP by design, and certificate_arn adds a TLS listener.
  #checkov:skip=CKV_AWS_150:Deletion protection is var.deletion_protection (default false) so that a test gateway can be destroyed; turn it on for a long-lived one.
  name               = var.name
  load_balancer_type = "network"
  internal           = false
  subnets            = aws_subnet.public[*].id
  security_groups    = [aws_security_group.nlb.id]
  ip_address_type    = "ipv4"

  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.deletion_protection
}

# Target groups: the tasks' IPs (awsvpc), health-checked over HTTP on
# /healthz. A leaving task is drained for var.deregistration_delay_secs,
# less than the gateway's shutdown grace, so it still answers meanwhile.

resource "aws_lb_target_group" "mock" {
  name_prefix          = "mock-"
  port                 = local.mock_port
  protocol             = "TCP"
  target_type          = "ip"
  vpc_id               = aws_vpc.main.id
  deregistration_delay = var.deregistration_delay_secs

  # Connections still open when the delay ends are closed.
  connection_termination = true

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = "/healthz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_target_group" "admin" {
  name_prefix          = "admin-"
  port                 = local.admin_port
  protocol             = "TCP"
  target_type          = "ip"
  vpc_id               = aws_vpc.main.id
  deregistration_delay = var.deregistration_delay_secs

  connection_termination = true

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = "/healthz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_listener" "mock" {
  load_balancer_arn = aws_lb.main.arn
  port              = var.mock_listener_port
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.mock.arn
  }
}

resource "aws_lb_listener" "mock_tls" {
  count = local.tls ? 1 : 0

  load_balancer_arn = aws_lb.main.arn
  port              = 443
  protocol          = "TLS"
  certificate_arn   = var.certificate_arn
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.mock.arn
  }
}

resource "aws_lb_listener" "admin" {
  load_balancer_arn = aws_lb.main.arn
  port              = var.admin_listener_port
  protocol          = local.tls ? "TLS" : "TCP"
  certificate_arn   = local.tls ? var.certificate_arn : null
  ssl_policy        = local.tls ? "ELBSecurityPolicy-TLS13-1-2-2021-06" : null

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.admin.arn
  }
}
