# Configure the kubernetes provider for a tenant cluster another configuration manages.
data "kamaji_tenant_cluster" "payments" {
  name = "payments"
}

output "payments_ca_cert_hash" {
  value = "sha256:${data.kamaji_tenant_cluster.payments.ca_cert_hash}"
}

output "payments_ready" {
  value = data.kamaji_tenant_cluster.payments.status == "Ready"
}
