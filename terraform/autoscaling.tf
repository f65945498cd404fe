# Application Auto Scaling of the service's task count, between min_tasks and
# max_tasks, with two target-tracking policies; the larger count wins:
#
# * requests per task, from the EMF metric the gateway prints once a minute
#   (an NLB has no request-count metric of its own). The metric has the one
#   dimension ServiceName, so each task's line is one sample in the
#   service's series: Sum / SampleCount is the requests of the average task
#   in that minute, / 60 per second;
# * average CPU, as a safety net (e.g. when the EMF lines stop arriving).

resource "aws_appautoscaling_target" "service" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.gateway.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_tasks
  max_capacity       = var.max_tasks
}

resource "aws_appautoscaling_policy" "requests_per_task" {
  name               = "${var.name}-requests-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  resource_id        = aws_appautoscaling_target.service.resource_id
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.requests_per_task_target
    scale_out_cooldown = var.scale_out_cooldown_secs
    scale_in_cooldown  = var.scale_in_cooldown_secs

    customized_metric_specification {
      metrics {
        id          = "requests"
        label       = "Requests in the minute, all tasks"
        return_data = false

        metric_stat {
          stat = "Sum"

          metric {
            namespace   = local.emf_namespace
            metric_name = local.emf_metric

            dimensions {
              name  = local.emf_dimension
              value = var.name
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        label       = "Tasks that reported in the minute"
        return_data = false

        metric_stat {
          stat = "SampleCount"

          metric {
            namespace   = local.emf_namespace
            metric_name = local.emf_metric

            dimensions {
              name  = local.emf_dimension
              value = var.name
            }
          }
        }
      }

      metrics {
        id          = "per_task"
        label       = "Requests per second per task"
        expression  = "requests / tasks / 60"
        return_data = true
      }
    }
  }
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  resource_id        = aws_appautoscaling_target.service.resource_id
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_out_cooldown = var.scale_out_cooldown_secs
    scale_in_cooldown  = var.scale_in_cooldown_secs

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}
