# Logs, dashboard and alarms. The gateway writes JSON logs to stderr and one
# EMF line a minute to stdout; the awslogs driver sends both to the log
# group, where CloudWatch turns the EMF lines into the metric
# EchoGateway/Requests (dimension ServiceName).

resource "aws_cloudwatch_log_group" "gateway" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 30 days): a mock gateway's logs are for troubleshooting, not for audit; raise it where a year is required.
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

locals {
  nlb_dims       = { LoadBalancer = aws_lb.main.arn_suffix }
  mock_tg_dims   = { LoadBalancer = aws_lb.main.arn_suffix, TargetGroup = aws_lb_target_group.mock.arn_suffix }
  admin_tg_dims  = { LoadBalancer = aws_lb.main.arn_suffix, TargetGroup = aws_lb_target_group.admin.arn_suffix }
  service_dims   = { ClusterName = aws_ecs_cluster.main.name, ServiceName = aws_ecs_service.gateway.name }
  emf_dims       = { (local.emf_dimension) = var.name }
  alarm_prefix   = "${var.name}-"
  dashboard_name = var.name
}

# ---------------------------------------------------------------- alarms

resource "aws_cloudwatch_metric_alarm" "unhealthy_mock_targets" {
  alarm_name          = "${local.alarm_prefix}unhealthy-mock-targets"
  alarm_description   = "Tasks fail the NLB health check (GET /healthz on 8080) for 3 minutes."
  namespace           = "AWS/NetworkELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = local.mock_tg_dims
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_admin_targets" {
  alarm_name          = "${local.alarm_prefix}unhealthy-admin-targets"
  alarm_description   = "Tasks fail the admin listener's health check (GET /healthz on 9090) for 3 minutes."
  namespace           = "AWS/NetworkELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = local.admin_tg_dims
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "no_healthy_targets" {
  alarm_name          = "${local.alarm_prefix}no-healthy-mock-targets"
  alarm_description   = "No task behind the mock listener is healthy: every mock request fails."
  namespace           = "AWS/NetworkELB"
  metric_name         = "HealthyHostCount"
  dimensions          = local.mock_tg_dims
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "target_resets" {
  alarm_name          = "${local.alarm_prefix}target-tcp-resets"
  alarm_description   = "Tasks reset many TCP connections (crashes, overload, or shutdowns cut short) for 3 minutes. An NLB sees no HTTP status codes: the gateway's 5xx are in its logs and /metrics."
  namespace           = "AWS/NetworkELB"
  metric_name         = "TCP_Target_Reset_Count"
  dimensions          = local.nlb_dims
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.target_reset_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "cpu_high" {
  alarm_name          = "${local.alarm_prefix}cpu-high"
  alarm_description   = "The service's average CPU stays above ${var.cpu_alarm_percent}% for 5 minutes (scaling at max_tasks, or too slow)."
  namespace           = "AWS/ECS"
  metric_name         = "CPUUtilization"
  dimensions          = local.service_dims
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.cpu_alarm_percent
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "emf_missing" {
  alarm_name          = "${local.alarm_prefix}request-metric-missing"
  alarm_description   = "No task has published the EMF metric ${local.emf_namespace}/${local.emf_metric} for 10 minutes: request-based scaling is blind (CPU scaling still works)."
  namespace           = local.emf_namespace
  metric_name         = local.emf_metric
  dimensions          = local.emf_dims
  statistic           = "SampleCount"
  period              = 60
  evaluation_periods  = 10
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

# ---------------------------------------------------------------- dashboard

resource "aws_cloudwatch_dashboard" "gateway" {
  dashboard_name = local.dashboard_name

  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title  = "Requests (EMF ${local.emf_namespace}/${local.emf_metric})"
          region = local.region
          view   = "timeSeries"
          period = 60
          metrics = [
            [local.emf_namespace, local.emf_metric, local.emf_dimension, var.name, { id = "requests", stat = "Sum", label = "Requests per minute, all tasks" }],
            [local.emf_namespace, local.emf_metric, local.emf_dimension, var.name, { id = "tasks", stat = "SampleCount", visible = false }],
            [{ id = "per_task", expression = "requests / tasks / 60", label = "Requests per second per task (scaling target ${var.requests_per_task_target})", yAxis = "right" }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title  = "Tasks"
          region = local.region
          view   = "timeSeries"
          period = 60
          metrics = [
            ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", aws_ecs_service.gateway.name, { stat = "Average", label = "Running (Container Insights)" }],
            ["ECS/ContainerInsights", "DesiredTaskCount", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", aws_ecs_service.gateway.name, { stat = "Average", label = "Desired (Container Insights)" }],
            [local.emf_namespace, local.emf_metric, local.emf_dimension, var.name, { stat = "SampleCount", label = "Tasks reporting requests (EMF)" }],
          ]
          annotations = {
            horizontal = [
              { label = "min_tasks", value = var.min_tasks },
              { label = "max_tasks", value = var.max_tasks },
            ]
          }
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title  = "Healthy and unhealthy targets"
          region = local.region
          view   = "timeSeries"
          period = 60
          stat   = "Maximum"
          metrics = [
            ["AWS/NetworkELB", "HealthyHostCount", "TargetGroup", aws_lb_target_group.mock.arn_suffix, "LoadBalancer", aws_lb.main.arn_suffix, { label = "Healthy (mocks)" }],
            ["AWS/NetworkELB", "UnHealthyHostCount", "TargetGroup", aws_lb_target_group.mock.arn_suffix, "LoadBalancer", aws_lb.main.arn_suffix, { label = "Unhealthy (mocks)" }],
            ["AWS/NetworkELB", "HealthyHostCount", "TargetGroup", aws_lb_target_group.admin.arn_suffix, "LoadBalancer", aws_lb.main.arn_suffix, { label = "Healthy (admin)" }],
            ["AWS/NetworkELB", "UnHealthyHostCount", "TargetGroup", aws_lb_target_group.admin.arn_suffix, "LoadBalancer", aws_lb.main.arn_suffix, { label = "Unhealthy (admin)" }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title  = "CPU and memory (service average)"
          region = local.region
          view   = "timeSeries"
          period = 60
          stat   = "Average"
          metrics = [
            ["AWS/ECS", "CPUUtilization", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", aws_ecs_service.gateway.name, { label = "CPU %" }],
            ["AWS/ECS", "MemoryUtilization", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", aws_ecs_service.gateway.name, { label = "Memory %" }],
          ]
          annotations = {
            horizontal = [{ label = "CPU scaling target", value = var.cpu_target_percent }]
          }
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 8, height = 6
        properties = {
          title  = "NLB flows"
          region = local.region
          view   = "timeSeries"
          period = 60
          metrics = [
            ["AWS/NetworkELB", "NewFlowCount", "LoadBalancer", aws_lb.main.arn_suffix, { stat = "Sum", label = "New flows per minute" }],
            ["AWS/NetworkELB", "ActiveFlowCount", "LoadBalancer", aws_lb.main.arn_suffix, { stat = "Average", label = "Active flows" }],
          ]
        }
      },
      {
        type = "metric", x = 8, y = 12, width = 8, height = 6
        properties = {
          title  = "NLB processed bytes"
          region = local.region
          view   = "timeSeries"
          period = 60
          stat   = "Sum"
          metrics = [
            ["AWS/NetworkELB", "ProcessedBytes", "LoadBalancer", aws_lb.main.arn_suffix, { label = "Bytes per minute" }],
          ]
        }
      },
      {
        type = "metric", x = 16, y = 12, width = 8, height = 6
        properties = {
          title  = "TCP resets"
          region = local.region
          view   = "timeSeries"
          period = 60
          stat   = "Sum"
          metrics = [
            ["AWS/NetworkELB", "TCP_Target_Reset_Count", "LoadBalancer", aws_lb.main.arn_suffix, { label = "By targets" }],
            ["AWS/NetworkELB", "TCP_ELB_Reset_Count", "LoadBalancer", aws_lb.main.arn_suffix, { label = "By the NLB" }],
            ["AWS/NetworkELB", "TCP_Client_Reset_Count", "LoadBalancer", aws_lb.main.arn_suffix, { label = "By clients" }],
          ]
        }
      },
      {
        type = "alarm", x = 0, y = 18, width = 24, height = 3
        properties = {
          title = "Alarms"
          alarms = [
            aws_cloudwatch_metric_alarm.no_healthy_targets.arn,
            aws_cloudwatch_metric_alarm.unhealthy_mock_targets.arn,
            aws_cloudwatch_metric_alarm.unhealthy_admin_targets.arn,
            aws_cloudwatch_metric_alarm.target_resets.arn,
            aws_cloudwatch_metric_alarm.cpu_high.arn,
            aws_cloudwatch_metric_alarm.emf_missing.arn,
          ]
        }
      },
    ]
  })
}
