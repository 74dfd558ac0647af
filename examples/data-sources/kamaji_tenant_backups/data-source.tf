# Every backup kamajid keeps of the payments cluster, oldest first.
data "kamaji_tenant_backups" "payments" {
  tenant_cluster = "payments"
}

output "payments_backups" {
  value = {
    for b in data.kamaji_tenant_backups.payments.backups : b.id => "${b.created_at} ${b.keys} keys ${b.size_bytes} bytes"
  }
}
