# Managed Kafka (Amazon MSK) for user-events / user-events.dlq / exposures:
# TLS in transit, SASL/SCRAM-SHA-512 client auth (bootstrap port 9096), the
# SCRAM credentials in Secrets Manager (name must start with AmazonMSK_,
# encrypted with a customer-managed KMS key). Topics are created by the
# platform's bootstrap job (auto-create is off).

variable "name" {
  description = "Cluster name."
  type        = string
}

variable "kafka_version" {
  description = "Apache Kafka version."
  type        = string
  default     = "3.8.x"
}

variable "broker_instance_type" {
  description = "Broker instance type."
  type        = string
}

variable "broker_count" {
  description = "Brokers (a multiple of the number of subnets)."
  type        = number
}

variable "volume_size_gb" {
  description = "EBS storage per broker, GiB."
  type        = number
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets, one per AZ."
  type        = list(string)
}

variable "client_cidrs" {
  description = "CIDRs allowed to reach the brokers (the VPC)."
  type        = list(string)
}

variable "scram_username" {
  description = "SCRAM user for Cascade's producers/consumers."
  type        = string
  default     = "cascade"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-msk-"
  vpc_id      = var.vpc_id
  description = "MSK brokers for ${var.name}"

  ingress {
    description = "Kafka SASL/SCRAM over TLS"
    from_port   = 9096
    to_port     = 9096
    protocol    = "tcp"
    cidr_blocks = var.client_cidrs
  }

  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = var.tags
}

resource "aws_msk_configuration" "this" {
  name           = "${var.name}-config"
  kafka_versions = [var.kafka_version]
  server_properties = join("\n", [
    "auto.create.topics.enable=false",
    "default.replication.factor=3",
    "min.insync.replicas=2",
    "num.partitions=12",
  ])
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.broker_count

  broker_node_group_info {
    instance_type   = var.broker_instance_type
    client_subnets  = var.subnet_ids
    security_groups = [aws_security_group.this.id]
    storage_info {
      ebs_storage_info {
        volume_size = var.volume_size_gb
      }
    }
  }

  client_authentication {
    sasl {
      scram = true
    }
  }

  encryption_info {
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  tags = var.tags
}

resource "aws_kms_key" "scram" {
  description         = "SCRAM secrets of ${var.name}"
  enable_key_rotation = true
  tags                = var.tags
}

resource "aws_secretsmanager_secret" "scram" {
  name       = "AmazonMSK_${var.name}_${var.scram_username}"
  kms_key_id = aws_kms_key.scram.arn
  tags       = var.tags
}

data "aws_secretsmanager_random_password" "scram" {
  password_length     = 32
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret_version" "scram" {
  secret_id = aws_secretsmanager_secret.scram.id
  secret_string = jsonencode({
    username = var.scram_username
    password = data.aws_secretsmanager_random_password.scram.random_password
  })

  lifecycle {
    # Generated once; rotate deliberately, not on every plan.
    ignore_changes = [secret_string]
  }
}

resource "aws_msk_scram_secret_association" "this" {
  cluster_arn     = aws_msk_cluster.this.arn
  secret_arn_list = [aws_secretsmanager_secret.scram.arn]
  depends_on      = [aws_secretsmanager_secret_version.scram]
}

output "bootstrap_brokers_sasl_scram" {
  description = "Bootstrap servers (chart: config.kafka.bootstrapServers, SASL_SSL + SCRAM-SHA-512)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_scram
}

output "scram_secret_arn" {
  description = "Secrets Manager secret with {username,password} (sync to the cascade-kafka-scram Secret)."
  value       = aws_secretsmanager_secret.scram.arn
}
