# A production tenant cluster: three control-plane replicas on a gold datastore, reached
# through a DNS name in front of the admin cluster's load balancer.
resource "kamaji_tenant_cluster" "payments" {
  name               = "payments"
  kubernetes_version = "1.36.3"
  replicas           = 3
  datastore_selector = { tier = "gold" }

  network {
    service_cidr     = "10.96.0.0/16"
    pod_cidr         = "10.244.0.0/16"
    dns_service_ip   = "10.96.0.10"
    service_type     = "LoadBalancer"
    endpoint_address = "payments.k8s.example.com"
    extra_sans       = ["payments.internal.example.com"]
    # Only the office and the workers' networks reach the API server.
    authorized_networks = ["203.0.113.0/24", "10.20.0.0/16"]
  }

  # Secrets are always encrypted at rest; ConfigMaps too here. Raise key_rotation to rotate.
  encryption {
    resources    = ["configmaps"]
    key_rotation = 0
  }

  # Engineers sign in with the company's identity provider; bind RBAC to "sso:" groups.
  authentication {
    oidc {
      issuer_url      = "https://sso.example.com/realms/engineering"
      client_id       = "payments-k8s"
      username_claim  = "email"
      username_prefix = "sso:"
      groups_claim    = "groups"
      groups_prefix   = "sso:"
    }
  }

  audit {
    preset       = "metadata"
    max_age_days = 90
  }

  resources {
    apiserver {
      cpu_request    = "500m"
      memory_request = "1Gi"
      memory_limit   = "2Gi"
    }
  }

  admission_plugins = ["NodeRestriction", "PodSecurity"]

  extra_args {
    apiserver = { "max-requests-inflight" = "800" }
  }

  # Backed up every 6 hours to kamajid's backup store; the last 28 (a week) are kept.
  backup_schedule {
    interval          = "6h"
    retention_count   = 28
    retention_max_age = "7d"
  }

  labels              = { team = "payments", env = "prod" }
  deletion_protection = true

  timeouts {
    create = "30m"
  }
}

# Upgrading is a one-line change: 1.36.x -> 1.37.x happens in place, one minor at a time.

output "payments_endpoint" {
  value = kamaji_tenant_cluster.payments.endpoint
}

output "payments_kubeconfig" {
  value     = kamaji_tenant_cluster.payments.admin_kubeconfig
  sensitive = true
}
