# Quickstart: register a pool of etcd datastores with kamajid and run tenant clusters on it.
#
# `make demo` starts a local secured environment (`kamajid dev`) and applies this with the
# variables it writes to .demo/quickstart.tfvars.json. Against your own kamajid, set the
# variables to your endpoints and certificate directory.

terraform {
  required_providers {
    kamaji = {
      source = "kamaji/kamaji"
    }
  }
}

variable "kamaji_endpoint" {
  description = "kamajid gRPC URL."
  type        = string
}

variable "pki_dir" {
  description = "Directory holding ca.crt, ca.key (etcd's client CA) and root.crt, root.key (etcd root client certificate)."
  type        = string
}

variable "datastore_endpoints" {
  description = "One etcd client URL per datastore."
  type        = list(string)
}

variable "tenant_clusters" {
  description = "Names of the tenant clusters to run. Needs kamajid with a control-plane runtime (an admin cluster)."
  type        = list(string)
  default     = ["alpha", "beta"]
}

variable "kubernetes_version" {
  description = "Kubernetes version of the tenant clusters."
  type        = string
  default     = "1.37.2"
}

provider "kamaji" {
  endpoint       = var.kamaji_endpoint
  ca_certificate = file("${var.pki_dir}/ca.crt")
  # token: from KAMAJI_TOKEN or KAMAJI_TOKEN_FILE, so it never sits in HCL.
}

resource "kamaji_datastore" "shard" {
  count = length(var.datastore_endpoints)

  name                  = "etcd-${count.index + 1}"
  endpoints             = [var.datastore_endpoints[count.index]]
  ca_certificate        = file("${var.pki_dir}/ca.crt")
  client_certificate    = file("${var.pki_dir}/root.crt")
  client_key            = file("${var.pki_dir}/root.key")
  client_ca_certificate = file("${var.pki_dir}/ca.crt")
  client_ca_key         = file("${var.pki_dir}/ca.key")
  quota_bytes           = 2 * 1024 * 1024 * 1024
  labels = {
    tier = "standard"
    zone = "local-${count.index + 1}"
  }
}

# kamajid places each tenant on the least-used standard datastore, fences it there with its own
# etcd user and key prefix, mints its PKI and runs its control plane.
resource "kamaji_tenant_cluster" "this" {
  for_each = toset(var.tenant_clusters)

  name               = each.key
  kubernetes_version = var.kubernetes_version
  datastore_selector = { tier = "standard" }
  labels             = { env = "quickstart" }

  network {
    service_type = "LoadBalancer"
  }

  depends_on = [kamaji_datastore.shard]
}

output "tenant_clusters" {
  description = "Each tenant cluster's API endpoint, shard and status."
  value = {
    for name, t in kamaji_tenant_cluster.this : name => {
      endpoint  = t.endpoint
      datastore = t.datastore
      version   = t.current_version
      status    = t.status
    }
  }
}

output "kubeconfigs" {
  description = "Admin kubeconfig per tenant cluster: terraform output -json kubeconfigs."
  value       = { for name, t in kamaji_tenant_cluster.this : name => t.admin_kubeconfig }
  sensitive   = true
}

# Read after the tenants exist, so each datastore's tenant count is current.
data "kamaji_datastores" "standard" {
  labels     = { tier = "standard" }
  depends_on = [kamaji_datastore.shard, kamaji_tenant_cluster.this]
}

output "datastores" {
  description = "The standard pool: health and tenants per datastore."
  value = {
    for d in data.kamaji_datastores.standard.datastores : d.name => {
      status       = d.status
      etcd_version = d.etcd_version
      tenants      = d.tenant_count
    }
  }
}
