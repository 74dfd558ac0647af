data "kamaji_datastore" "eu1_a" {
  name = "eu1-a"
}

output "eu1_a_ready" {
  value = data.kamaji_datastore.eu1_a.status == "Ready"
}
