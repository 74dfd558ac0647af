//! How the tenant apiserver is reached: its Service (of the tenant's type) and the
//! NetworkPolicy that lets only the API port in.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{meta, owner_labels, Tenant, SERVICE};

pub fn service(t: &Tenant<'_>) -> Service {
    Service {
        metadata: meta(t, SERVICE),
        spec: Some(ServiceSpec {
            type_: Some(t.spec.network.service_type.kubernetes_name().into()),
            selector: Some(owner_labels(t)),
            ports: Some(vec![ServicePort {
                name: Some("https".into()),
                port: i32::from(t.spec.network.port),
                target_port: Some(IntOrString::String("https".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Only the tenant API port is reachable; the components' health ports are for the kubelet.
pub fn network_policy(t: &Tenant<'_>) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(t, "kube-apiserver-ingress"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(owner_labels(t)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(i32::from(t.spec.network.port))),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::spec::ServiceType;

    #[test]
    fn the_service_has_the_tenant_type_and_port() {
        for st in [
            ServiceType::ClusterIp,
            ServiceType::NodePort,
            ServiceType::LoadBalancer,
        ] {
            let r = rendered(&spec(st));
            let s = r.service.spec.as_ref().unwrap();
            assert_eq!(s.type_.as_deref(), Some(st.kubernetes_name()));
            assert_eq!(s.ports.as_ref().unwrap()[0].port, 6443);
        }
    }
}
