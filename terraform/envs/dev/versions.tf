# Pinned Terraform and provider versions; state in S3 (bucket/key/region are
# passed at init: terraform init -backend-config=backend.hcl).
terraform {
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }

  backend "s3" {}
}
