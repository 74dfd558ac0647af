# An etcd cluster secured with TLS, client-certificate auth and auth enabled.
variable "pki_dir" {
  description = "Directory with the etcd CA, the root client certificate and the client CA."
  type        = string
}

resource "kamaji_datastore" "eu1_a" {
  name      = "eu1-a"
  endpoints = ["https://etcd-a-0.example:2379", "https://etcd-a-1.example:2379", "https://etcd-a-2.example:2379"]

  ca_certificate     = file("${var.pki_dir}/etcd-ca.crt")
  client_certificate = file("${var.pki_dir}/root.crt") # CN=root
  client_key         = file("${var.pki_dir}/root.key")

  # The CA etcd trusts for client certificates: kamajid signs each tenant's etcd
  # certificate with it.
  client_ca_certificate = file("${var.pki_dir}/etcd-client-ca.crt")
  client_ca_key         = file("${var.pki_dir}/etcd-client-ca.key")

  quota_bytes = 8 * 1024 * 1024 * 1024
  max_tenants = 200
  labels = {
    region = "eu1"
    tier   = "standard"
  }
}

output "eu1_a_status" {
  value = "${kamaji_datastore.eu1_a.status}: etcd ${kamaji_datastore.eu1_a.etcd_version}, ${kamaji_datastore.eu1_a.tenant_count} tenants"
}
