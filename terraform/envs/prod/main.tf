# Prod environment: three AZs, NAT per AZ, Multi-AZ Redis, three MSK brokers,
# an always-on GPU node for Triton.

provider "aws" {
  region = var.region
  default_tags {
    tags = { project = "cascade", env = "prod" }
  }
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

module "cascade" {
  source        = "../../modules/stack"
  name          = "cascade-prod"
  azs           = ["${var.region}a", "${var.region}b", "${var.region}c"]
  vpc_cidr      = "10.50.0.0/16"
  general_nodes = { instance_types = ["m6i.2xlarge"], min_size = 3, max_size = 30, desired_size = 6 }
  gpu_nodes     = { instance_types = ["g5.2xlarge"], min_size = 1, max_size = 4, desired_size = 1 }
  msk           = { broker_instance_type = "kafka.m7g.large", broker_count = 3, volume_size_gb = 500 }
  redis         = { node_type = "cache.r7g.large", replicas = 2 }
}

output "cascade" {
  description = "Values to feed the chart (k8s/overlays/prod/values-prod.yaml)."
  value = {
    cluster_name     = module.cascade.cluster_name
    kafka_bootstrap  = module.cascade.msk_bootstrap_brokers_sasl_scram
    redis_host       = module.cascade.redis_primary_endpoint
    model_bucket     = module.cascade.model_bucket
    serving_role_arn = module.cascade.serving_role_arn
    ecr_registry     = module.cascade.ecr_registry
  }
}
