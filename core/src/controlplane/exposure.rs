//! How the tenant apiserver is reached: its Service (of the tenant's type) and the
//! NetworkPolicy that lets only the API port in.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{meta, owner_labels, Tenant, SERVICE};
use crate::spec::ServiceType;

/// With authorized networks, a load balancer admits only them (`loadBalancerSourceRanges`) and
/// keeps the client's address (`externalTrafficPolicy: Local`), so the NetworkPolicy can check
/// it too.
/// The Service's (and container's) port for Konnectivity agents.
pub const KONNECTIVITY_PORT: u32 = super::konnectivity::POD_PORTS.agent;

pub fn service(t: &Tenant<'_>) -> Service {
    let net = &t.spec.network;
    let fenced_lb =
        net.service_type == ServiceType::LoadBalancer && !net.authorized_networks.is_empty();
    Service {
        metadata: meta(t, SERVICE),
        spec: Some(ServiceSpec {
            type_: Some(t.spec.network.service_type.kubernetes_name().into()),
            load_balancer_source_ranges: fenced_lb.then(|| {
                net.authorized_networks
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            }),
            external_traffic_policy: fenced_lb.then(|| "Local".to_owned()),
            selector: Some(owner_labels(t)),
            ports: Some(
                [ServicePort {
                    name: Some("https".into()),
                    port: i32::from(t.spec.network.port),
                    target_port: Some(IntOrString::String("https".into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]
                .into_iter()
                // Where the nodes' Konnectivity agents dial in.
                .chain(net.konnectivity.then(|| ServicePort {
                    name: Some("konnectivity".into()),
                    port: i32::try_from(KONNECTIVITY_PORT).unwrap_or(8132),
                    target_port: Some(IntOrString::String("konnectivity".into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }))
                .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The label kamajid's pods and namespace carry: the chart sets it on the pods, the operator on the
/// namespace (the chart's notes say how).
pub const KAMAJID_LABEL: (&str, &str) = ("app.kubernetes.io/name", "kamajid");

/// Only the tenant API port is reachable, and only from the authorized networks when there are
/// any, and from kamajid (which bootstraps and checks every tenant); the components' health
/// ports are for the kubelet.
pub fn network_policy(t: &Tenant<'_>) -> NetworkPolicy {
    let from = &t.spec.network.authorized_networks;
    let kamajid = || {
        Some(LabelSelector {
            match_labels: Some([(KAMAJID_LABEL.0.to_owned(), KAMAJID_LABEL.1.to_owned())].into()),
            ..Default::default()
        })
    };
    NetworkPolicy {
        metadata: meta(t, "kube-apiserver-ingress"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(owner_labels(t)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                // The agents on the nodes dial in from where the nodes are, as kubelets do.
                ports: Some(
                    [i32::from(t.spec.network.port)]
                        .into_iter()
                        .chain(
                            t.spec
                                .network
                                .konnectivity
                                .then(|| i32::try_from(KONNECTIVITY_PORT).unwrap_or(8132)),
                        )
                        .map(|p| NetworkPolicyPort {
                            port: Some(IntOrString::Int(p)),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                from: (!from.is_empty()).then(|| {
                    from.iter()
                        .map(|cidr| NetworkPolicyPeer {
                            ip_block: Some(IPBlock {
                                cidr: cidr.to_string(),
                                except: None,
                            }),
                            ..Default::default()
                        })
                        .chain([NetworkPolicyPeer {
                            namespace_selector: kamajid(),
                            pod_selector: kamajid(),
                            ..Default::default()
                        }])
                        .collect()
                }),
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
    fn authorized_networks_fence_the_load_balancer_and_the_api_port() {
        let mut s = spec(ServiceType::LoadBalancer);
        s.network.authorized_networks = vec![
            "203.0.113.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let r = rendered(&s);
        let svc = r.service.spec.as_ref().unwrap();
        assert_eq!(
            svc.load_balancer_source_ranges.as_deref(),
            Some(&["203.0.113.0/24".to_owned(), "2001:db8::/32".to_owned()][..])
        );
        assert_eq!(svc.external_traffic_policy.as_deref(), Some("Local"));
        let rule = &r
            .network_policy
            .spec
            .as_ref()
            .unwrap()
            .ingress
            .as_ref()
            .unwrap()[0];
        let cidrs: Vec<&str> = rule
            .from
            .as_ref()
            .unwrap()
            .iter()
            .filter_map(|p| p.ip_block.as_ref().map(|b| b.cidr.as_str()))
            .collect();
        assert_eq!(cidrs, ["203.0.113.0/24", "2001:db8::/32"]);
        let kamajid = rule.from.as_ref().unwrap().last().unwrap();
        assert!(
            kamajid.pod_selector.is_some() && kamajid.namespace_selector.is_some(),
            "kamajid still reaches the tenant: {kamajid:?}"
        );
        let open = rendered(&spec(ServiceType::LoadBalancer));
        assert!(open
            .service
            .spec
            .as_ref()
            .unwrap()
            .load_balancer_source_ranges
            .is_none());
        let np = open.network_policy.spec.unwrap();
        assert!(np.ingress.unwrap()[0].from.is_none());
    }

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
