# A backup of the payments cluster before a risky migration; kept in the store even if this
# configuration is later destroyed.
resource "kamaji_tenant_backup" "before_migration" {
  tenant_cluster    = "payments"
  labels            = { reason = "before-migration" }
  retain_on_destroy = true
}

# A copy of payments, as it was at the backup, on another datastore.
resource "kamaji_tenant_cluster" "payments_copy" {
  name               = "payments-copy"
  kubernetes_version = "1.37.2"
  datastore          = "eu1-b"
  restore_from       = kamaji_tenant_backup.before_migration.id
  network {}
}
