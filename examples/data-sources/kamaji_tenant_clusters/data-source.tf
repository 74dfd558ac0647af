# Every production tenant cluster on one datastore, e.g. before draining it.
data "kamaji_tenant_clusters" "prod_on_eu1_a" {
  labels    = { env = "prod" }
  datastore = "eu1-a"
}

output "prod_on_eu1_a" {
  value = {
    for t in data.kamaji_tenant_clusters.prod_on_eu1_a.tenant_clusters : t.name => "${t.status} ${t.current_version} ${t.endpoint}"
  }
}
