# Dev environment: small, one NAT gateway, GPU pool scaled to zero by default.

provider "aws" {
  region = var.region
  default_tags {
    tags = { project = "cascade", env = "dev" }
  }
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

module "cascade" {
  source               = "../../modules/stack"
  name                 = "cascade-dev"
  azs                  = ["${var.region}a", "${var.region}b"]
  vpc_cidr             = "10.40.0.0/16"
  single_nat_gateway   = true
  force_destroy_bucket = true
  general_nodes        = { instance_types = ["m6i.large"], min_size = 2, max_size = 4, desired_size = 2 }
  gpu_nodes            = { instance_types = ["g5.xlarge"], min_size = 0, max_size = 1, desired_size = 0 }
  msk                  = { broker_instance_type = "kafka.t3.small", broker_count = 2, volume_size_gb = 20 }
  redis                = { node_type = "cache.t4g.small", replicas = 0 }
}

output "cascade" {
  description = "Values to feed the chart (k8s/overlays/dev)."
  value = {
    cluster_name     = module.cascade.cluster_name
    kafka_bootstrap  = module.cascade.msk_bootstrap_brokers_sasl_scram
    redis_host       = module.cascade.redis_primary_endpoint
    model_bucket     = module.cascade.model_bucket
    serving_role_arn = module.cascade.serving_role_arn
    ecr_registry     = module.cascade.ecr_registry
  }
}
