output "nlb_dns_name" {
  description = "DNS name of the Network Load Balancer."
  value       = aws_lb.main.dns_name
}

output "mock_url" {
  description = "Base URL of the mocks through the NLB."
  value       = var.mock_listener_port == 80 ? "http://${aws_lb.main.dns_name}" : "http://${aws_lb.main.dns_name}:${var.mock_listener_port}"
}

output "mock_tls_url" {
  description = "Base URL of the mocks over TLS (with certificate_arn; use a DNS name the certificate covers, aliased to the NLB)."
  value       = local.tls ? "https://${aws_lb.main.dns_name}" : null
}

output "admin_url" {
  description = "Base URL of the admin API (reachable from admin_allowed_cidrs only; send Authorization: Bearer <token>)."
  value       = "${local.tls ? "https" : "http"}://${aws_lb.main.dns_name}:${var.admin_listener_port}"
}

output "admin_token_secret_arn" {
  description = "Secrets Manager secret holding the admin token."
  value       = local.admin_token_secret_arn
}

output "admin_token_command" {
  description = "Prints the admin token."
  value       = "aws secretsmanager get-secret-value --region ${local.region} --secret-id ${local.admin_token_secret_arn} --query SecretString --output text"
}

output "ecr_repository_url" {
  description = "ECR repository to push the image to."
  value       = aws_ecr_repository.gateway.repository_url
}

output "image" {
  description = "Image the task definition runs."
  value       = local.image
}

output "ecs_cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.main.name
}

output "ecs_service_name" {
  description = "ECS service name."
  value       = aws_ecs_service.gateway.name
}

output "log_group_name" {
  description = "CloudWatch log group of the gateway (JSON logs and EMF lines)."
  value       = aws_cloudwatch_log_group.gateway.name
}

output "dashboard_url" {
  description = "CloudWatch dashboard."
  value       = "https://${local.region}.console.aws.amazon.com/cloudwatch/home?region=${local.region}#dashboards:name=${aws_cloudwatch_dashboard.gateway.dashboard_name}"
}

output "redis_primary_endpoint" {
  description = "Primary endpoint of the Redis store (when enable_redis)."
  value       = var.enable_redis ? aws_elasticache_replication_group.redis[0].primary_endpoint_address : null
}
