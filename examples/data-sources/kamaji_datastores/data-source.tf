# Every datastore of the standard tier in eu1.
data "kamaji_datastores" "eu1_standard" {
  labels = {
    region = "eu1"
    tier   = "standard"
  }
}

output "eu1_standard_free" {
  value = [for d in data.kamaji_datastores.eu1_standard.datastores : d.name if d.status == "Ready" && d.schedulable]
}
