# A tenant cluster is imported by its name; everything, credentials included, is read back.
terraform import kamaji_tenant_cluster.payments payments
