# One ECR repository per Cascade image (immutable tags, scan on push); the
# registry host is the chart's global.imageRegistry.

variable "repositories" {
  description = "Repository names (cascade-router, ...)."
  type        = list(string)
}

variable "tags" {
  description = "Tags for every repository."
  type        = map(string)
  default     = {}
}

resource "aws_ecr_repository" "this" {
  for_each             = toset(var.repositories)
  name                 = each.value
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
  }
  tags = var.tags
}

output "registry" {
  description = "Registry host of the repositories."
  value       = length(var.repositories) > 0 ? split("/", aws_ecr_repository.this[var.repositories[0]].repository_url)[0] : ""
}
