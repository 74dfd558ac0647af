# A token for a week of worker joins; workers run join_command (see examples/modules).
resource "kamaji_bootstrap_token" "workers" {
  tenant_cluster = "payments"
  ttl            = "168h"
  description    = "payments workers, week 48"
}

output "join_command" {
  value     = kamaji_bootstrap_token.workers.join_command
  sensitive = true
}
