# A managed Kubernetes cluster with workers on AWS: the control plane runs in kamaji (a
# kamaji_tenant_cluster), the workers are EC2 instances that join it through cloud-init with a
# bootstrap token. Swap the aws_instance for any VM provider; ../worker-cloud-init is generic.

terraform {
  required_version = ">= 1.5"
  required_providers {
    kamaji = {
      source = "kamaji/kamaji"
    }
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "name" {
  description = "Tenant cluster name (a DNS label)."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes version of the control plane and the workers, e.g. \"1.36.3\"."
  type        = string
  default     = "1.36.3"
}

variable "endpoint_address" {
  description = "DNS name or IP the workers reach the control plane at; empty uses the load-balancer address kamajid reports."
  type        = string
  default     = ""
}

variable "worker_count" {
  description = "Number of worker VMs."
  type        = number
  default     = 3
  validation {
    condition     = var.worker_count >= 0 && var.worker_count <= 100
    error_message = "worker_count must be between 0 and 100."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the workers."
  type        = string
  default     = "t3.large"
}

variable "ami_id" {
  description = "An Ubuntu 22.04 or 24.04 AMI (cloud-init and apt)."
  type        = string
}

variable "subnet_id" {
  description = "Subnet the workers run in; it must reach the tenant endpoint on its port."
  type        = string
}

variable "security_group_ids" {
  description = "Security groups of the workers."
  type        = list(string)
  default     = []
}

variable "token_ttl" {
  description = "How long the join token stays valid. Workers created after it expired need a new token (terraform apply -replace=module.<name>.module.join.kamaji_bootstrap_token.this)."
  type        = string
  default     = "24h"
}

resource "kamaji_tenant_cluster" "this" {
  name               = var.name
  kubernetes_version = var.kubernetes_version

  network {
    endpoint_address = var.endpoint_address != "" ? var.endpoint_address : null
  }
}

module "join" {
  source             = "../worker-cloud-init"
  tenant_cluster     = kamaji_tenant_cluster.this.name
  kubernetes_version = kamaji_tenant_cluster.this.kubernetes_version
  token_ttl          = var.token_ttl
  node_labels        = { "kamaji.io/tenant" = var.name }
}

resource "aws_instance" "worker" {
  count                  = var.worker_count
  ami                    = var.ami_id
  instance_type          = var.instance_type
  subnet_id              = var.subnet_id
  vpc_security_group_ids = var.security_group_ids
  user_data              = module.join.cloud_init

  tags = {
    Name               = "${var.name}-worker-${count.index}"
    "kamaji.io/tenant" = var.name
  }

  lifecycle {
    # A joined worker keeps working when the token rotates; only new workers use the new one.
    ignore_changes = [user_data]
  }
}

output "endpoint" {
  description = "The tenant apiserver URL."
  value       = kamaji_tenant_cluster.this.endpoint
}

output "kubeconfig" {
  description = "Admin kubeconfig of the tenant cluster."
  value       = kamaji_tenant_cluster.this.admin_kubeconfig
  sensitive   = true
}

output "worker_private_ips" {
  description = "Private addresses of the workers."
  value       = aws_instance.worker[*].private_ip
}
