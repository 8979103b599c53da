# One complete Cascade environment: network, EKS (+GPU node group), MSK,
# ElastiCache, model bucket, ECR and the IRSA roles the chart's service
# accounts use. envs/dev and envs/prod differ only in the sizes passed here.

variable "name" {
  description = "Environment name prefix, e.g. cascade-prod."
  type        = string
}

variable "azs" {
  description = "Availability zones."
  type        = list(string)
}

variable "vpc_cidr" {
  description = "VPC CIDR."
  type        = string
}

variable "single_nat_gateway" {
  description = "One shared NAT gateway (dev)."
  type        = bool
  default     = false
}

variable "general_nodes" {
  description = "General node group sizing."
  type = object({
    instance_types = list(string)
    min_size       = number
    max_size       = number
    desired_size   = number
  })
}

variable "gpu_nodes" {
  description = "GPU node group sizing (Triton)."
  type = object({
    instance_types = list(string)
    min_size       = number
    max_size       = number
    desired_size   = number
  })
}

variable "msk" {
  description = "MSK sizing."
  type = object({
    broker_instance_type = string
    broker_count         = number
    volume_size_gb       = number
  })
}

variable "redis" {
  description = "ElastiCache sizing."
  type = object({
    node_type = string
    replicas  = number
  })
}

variable "namespace" {
  description = "Kubernetes namespace of the Cascade release."
  type        = string
  default     = "cascade"
}

variable "force_destroy_bucket" {
  description = "Allow destroying a non-empty model bucket."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

locals {
  images = ["cascade-router", "cascade-retrieval", "cascade-features", "cascade-ranking", "cascade-gateway", "cascade-stream"]
}

module "network" {
  source             = "../network"
  name               = var.name
  cidr               = var.vpc_cidr
  azs                = var.azs
  single_nat_gateway = var.single_nat_gateway
  tags               = var.tags
}

module "eks" {
  source        = "../eks"
  name          = var.name
  subnet_ids    = module.network.private_subnet_ids
  general_nodes = var.general_nodes
  gpu_nodes     = var.gpu_nodes
  tags          = var.tags
}

module "msk" {
  source               = "../msk"
  name                 = var.name
  broker_instance_type = var.msk.broker_instance_type
  broker_count         = var.msk.broker_count
  volume_size_gb       = var.msk.volume_size_gb
  vpc_id               = module.network.vpc_id
  subnet_ids           = module.network.private_subnet_ids
  client_cidrs         = [module.network.vpc_cidr]
  tags                 = var.tags
}

module "redis" {
  source       = "../elasticache"
  name         = var.name
  node_type    = var.redis.node_type
  replicas     = var.redis.replicas
  vpc_id       = module.network.vpc_id
  subnet_ids   = module.network.private_subnet_ids
  client_cidrs = [module.network.vpc_cidr]
  tags         = var.tags
}

module "models" {
  source        = "../model_bucket"
  name          = "${var.name}-models"
  force_destroy = var.force_destroy_bucket
  tags          = var.tags
}

module "ecr" {
  source       = "../ecr"
  repositories = local.images
  tags         = var.tags
}

data "aws_iam_policy_document" "serving" {
  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    resources = [module.models.arn]
  }
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject"]
    resources = ["${module.models.arn}/*"]
  }
}

# Pods of the release (ServiceAccount "cascade") read models from the bucket.
module "serving_role" {
  source            = "../irsa"
  name              = "${var.name}-serving"
  oidc_provider_arn = module.eks.oidc_provider_arn
  oidc_issuer       = module.eks.oidc_issuer
  namespace         = var.namespace
  service_account   = "cascade"
  policy_json       = data.aws_iam_policy_document.serving.json
  tags              = var.tags
}

data "aws_iam_policy_document" "external_secrets" {
  statement {
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [module.msk.scram_secret_arn, module.redis.auth_secret_arn]
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${data.aws_region.current.name}.amazonaws.com"]
    }
  }
}

data "aws_region" "current" {}

# External Secrets operator syncs the MSK SCRAM and Redis AUTH secrets into the namespace.
module "external_secrets_role" {
  source            = "../irsa"
  name              = "${var.name}-external-secrets"
  oidc_provider_arn = module.eks.oidc_provider_arn
  oidc_issuer       = module.eks.oidc_issuer
  namespace         = "external-secrets"
  service_account   = "external-secrets"
  policy_json       = data.aws_iam_policy_document.external_secrets.json
  tags              = var.tags
}

output "cluster_name" {
  description = "EKS cluster name."
  value       = module.eks.cluster_name
}

output "msk_bootstrap_brokers_sasl_scram" {
  description = "chart: config.kafka.bootstrapServers."
  value       = module.msk.bootstrap_brokers_sasl_scram
}

output "redis_primary_endpoint" {
  description = "chart: config.redis.host."
  value       = module.redis.primary_endpoint
}

output "model_bucket" {
  description = "chart: artifacts.uri = s3://<model_bucket>."
  value       = module.models.bucket
}

output "serving_role_arn" {
  description = "chart: serviceAccount.annotations.eks.amazonaws.com/role-arn."
  value       = module.serving_role.role_arn
}

output "external_secrets_role_arn" {
  description = "IRSA role of the External Secrets operator."
  value       = module.external_secrets_role.role_arn
}

output "ecr_registry" {
  description = "chart: global.imageRegistry."
  value       = module.ecr.registry
}
