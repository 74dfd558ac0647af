# A production tenant cluster: three control-plane replicas on a gold datastore, reached
# through a DNS name in front of the admin cluster's load balancer.
resource "kamaji_tenant_cluster" "payments" {
  name               = "payments"
  kubernetes_version = "1.35.2"
  replicas           = 3
  datastore_selector = { tier = "gold" }

  network {
    service_cidr     = "10.96.0.0/16"
    pod_cidr         = "10.244.0.0/16"
    dns_service_ip   = "10.96.0.10"
    service_type     = "LoadBalancer"
    endpoint_address = "payments.k8s.example.com"
    extra_sans       = ["payments.internal.example.com"]
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
    apiserver = { "audit-log-maxage" = "30" }
  }

  labels              = { team = "payments", env = "prod" }
  deletion_protection = true

  timeouts {
    create = "30m"
  }
}

# Upgrading is a one-line change: 1.35.x -> 1.36.x happens in place, one minor at a time.

output "payments_endpoint" {
  value = kamaji_tenant_cluster.payments.endpoint
}

output "payments_kubeconfig" {
  value     = kamaji_tenant_cluster.payments.admin_kubeconfig
  sensitive = true
}
