# Quickstart: register a pool of etcd datastores with kamajid.
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

data "kamaji_datastores" "standard" {
  labels     = { tier = "standard" }
  depends_on = [kamaji_datastore.shard]
}

output "datastores" {
  description = "Registered datastores and their health."
  value = {
    for d in kamaji_datastore.shard : d.name => {
      status       = d.status
      etcd_version = d.etcd_version
      db_size      = d.db_size_bytes
      tenants      = d.tenant_count
    }
  }
}

output "standard_pool" {
  value = data.kamaji_datastores.standard.names
}
