# A backup is imported by its id (see the kamaji_tenant_backups data source).
terraform import kamaji_tenant_backup.before_migration payments-20261206101500-1a2b
