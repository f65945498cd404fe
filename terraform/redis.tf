# Optional ElastiCache Redis for the shared store (var.enable_redis): every
# task then serves the same runtime mocks. Encrypted in transit (TLS, which
# the gateway speaks with rediss://) and at rest, AUTH token required, in the
# private subnets, reachable from the tasks only.

resource "aws_security_group" "redis" {
  count = var.enable_redis ? 1 : 0

  name_prefix = "${var.name}-redis-"
  description = "${var.name} Redis: from the tasks only"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-redis" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  count = var.enable_redis ? 1 : 0

  security_group_id            = aws_security_group.redis[0].id
  description                  = "Redis from the gateway tasks"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_redis" {
  count = var.enable_redis ? 1 : 0

  security_group_id            = aws_security_group.tasks.id
  description                  = "Redis store"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.redis[0].id
}

resource "aws_elasticache_subnet_group" "redis" {
  count = var.enable_redis ? 1 : 0

  name       = "${var.name}-redis"
  subnet_ids = aws_subnet.private[*].id
}

# AUTH token drawn by Secrets Manager; `ignore_changes` keeps the first one
# (the data source draws anew on every plan), and the URL secret below is
# built from the value the replication group keeps.
data "aws_secretsmanager_random_password" "redis_auth" {
  count = var.enable_redis ? 1 : 0

  password_length     = 64
  exclude_punctuation = true
}

resource "aws_elasticache_replication_group" "redis" {
  count = var.enable_redis ? 1 : 0

  replication_group_id = "${var.name}-store"
  description          = "${var.name} shared store of runtime mocks"
  engine               = "redis"
  engine_version       = var.redis_engine_version
  node_type            = var.redis_node_type
  num_cache_clusters   = var.redis_num_cache_clusters
  port                 = 6379

  automatic_failover_enabled = true
  multi_az_enabled           = true

  subnet_group_name  = aws_elasticache_subnet_group.redis[0].name
  security_group_ids = [aws_security_group.redis[0].id]

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.main.arn
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = data.aws_secretsmanager_random_password.redis_auth[0].random_password

  snapshot_retention_limit   = 1
  auto_minor_version_upgrade = true

  lifecycle {
    ignore_changes = [auth_token]
  }
}

# The whole URL is the secret (it carries the AUTH token); the task gets it
# as ECHO_REDIS_URL.
resource "aws_secretsmanager_secret" "redis_url" {
  #checkov:skip=CKV2_AWS_57:Derived from the replication group's AUTH token, which Terraform manages; rotating it means a new token on the replication group and a task redeploy, not a Lambda.
  count = var.enable_redis ? 1 : 0

  name_prefix             = "${var.name}/redis-url-"
  description             = "URL of the ${var.name} Redis store, with its AUTH token (ECHO_REDIS_URL)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  count = var.enable_redis ? 1 : 0

  secret_id     = aws_secretsmanager_secret.redis_url[0].id
  secret_string = "rediss://:${aws_elasticache_replication_group.redis[0].auth_token}@${aws_elasticache_replication_group.redis[0].primary_endpoint_address}:6379/0"
}
