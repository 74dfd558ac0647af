# Roll payments back, in place, to the newest of its backups. Its writes are held and its
# control plane restarted on the restored objects; no other cluster of its datastore is touched.
data "kamaji_tenant_backups" "payments" {
  tenant_cluster = "payments"
}

resource "kamaji_tenant_restore" "rollback" {
  tenant_cluster = "payments"
  backup_id      = element(data.kamaji_tenant_backups.payments.ids, length(data.kamaji_tenant_backups.payments.ids) - 1)
}
