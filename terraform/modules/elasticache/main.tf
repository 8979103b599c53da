# Managed Redis (ElastiCache replication group) as the Feast online store:
# Multi-AZ with automatic failover, TLS in transit, encryption at rest and an
# AUTH token generated into Secrets Manager (synced to the cascade-redis-auth Secret).

variable "name" {
  description = "Replication group id."
  type        = string
}

variable "node_type" {
  description = "Cache node type."
  type        = string
}

variable "replicas" {
  description = "Read replicas per shard (>= 1 enables automatic failover)."
  type        = number
  default     = 1
}

variable "engine_version" {
  description = "Redis engine version."
  type        = string
  default     = "7.1"
}

variable "vpc_id" {
  description = "VPC of the cache."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets."
  type        = list(string)
}

variable "client_cidrs" {
  description = "CIDRs allowed to reach Redis (the VPC)."
  type        = list(string)
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-redis-"
  vpc_id      = var.vpc_id
  description = "ElastiCache Redis for ${var.name}"

  ingress {
    description = "Redis over TLS"
    from_port   = 6379
    to_port     = 6379
    protocol    = "tcp"
    cidr_blocks = var.client_cidrs
  }

  tags = var.tags
}

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

data "aws_secretsmanager_random_password" "auth" {
  password_length     = 64
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "auth" {
  name = "${var.name}/redis-auth"
  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "auth" {
  secret_id     = aws_secretsmanager_secret.auth.id
  secret_string = jsonencode({ password = data.aws_secretsmanager_random_password.auth.random_password })

  lifecycle {
    ignore_changes = [secret_string]
  }
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = var.name
  description                = "Cascade online feature store"
  engine                     = "redis"
  engine_version             = var.engine_version
  node_type                  = var.node_type
  num_cache_clusters         = var.replicas + 1
  automatic_failover_enabled = var.replicas > 0
  multi_az_enabled           = var.replicas > 0
  port                       = 6379
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.this.id]
  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  auth_token                 = data.aws_secretsmanager_random_password.auth.random_password
  apply_immediately          = false
  tags                       = var.tags

  lifecycle {
    # The token lives in Secrets Manager; rotate it deliberately.
    ignore_changes = [auth_token]
  }
}

output "primary_endpoint" {
  description = "Primary endpoint (chart: config.redis.host with ssl: true)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "auth_secret_arn" {
  description = "Secrets Manager secret holding the AUTH token."
  value       = aws_secretsmanager_secret.auth.arn
}
