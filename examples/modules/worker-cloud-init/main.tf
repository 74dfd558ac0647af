# Worker join for any VM provider: a bootstrap token of the tenant cluster and the cloud-init
# document that installs containerd, kubelet and kubeadm at the tenant's minor version and runs
# `kubeadm join`. Pass `cloud_init` as the VM's user data.

terraform {
  required_version = ">= 1.5"
  required_providers {
    kamaji = {
      source = "kamaji/kamaji"
    }
  }
}

variable "tenant_cluster" {
  description = "Name of the kamaji_tenant_cluster the workers join."
  type        = string
}

variable "kubernetes_version" {
  description = "The tenant cluster's version, e.g. \"1.36.3\": workers install kubelet and kubeadm of the same minor."
  type        = string
  validation {
    condition     = can(regex("^v?1\\.[0-9]+\\.[0-9]+$", var.kubernetes_version))
    error_message = "kubernetes_version must look like \"1.36.3\"."
  }
}

variable "token_ttl" {
  description = "How long new workers may join with this token (a duration such as \"24h\")."
  type        = string
  default     = "24h"
}

variable "node_labels" {
  description = "Labels the kubelet registers the node with."
  type        = map(string)
  default     = {}
}

resource "kamaji_bootstrap_token" "this" {
  tenant_cluster = var.tenant_cluster
  ttl            = var.token_ttl
  description    = "workers of ${var.tenant_cluster} (terraform)"
}

locals {
  minor  = join(".", slice(split(".", trimprefix(var.kubernetes_version, "v")), 0, 2))
  labels = join(",", [for k, v in var.node_labels : "${k}=${v}"])
}

output "cloud_init" {
  description = "cloud-init user data that joins the VM to the tenant cluster. Contains the token."
  sensitive   = true
  value = templatefile("${path.module}/cloud-init.yaml.tftpl", {
    minor        = local.minor
    join_command = kamaji_bootstrap_token.this.join_command
    node_labels  = local.labels
  })
}

output "join_command" {
  description = "The kubeadm join command line alone."
  sensitive   = true
  value       = kamaji_bootstrap_token.this.join_command
}

output "token_expires_at" {
  description = "After this time new VMs need a new token: taint or replace kamaji_bootstrap_token.this."
  value       = kamaji_bootstrap_token.this.expires_at
}
