//! The routine health check of a tenant on the Kubernetes runtime reads kamajid's watch of its
//! Deployments and Services, not the admin cluster; a control plane the watch does not show
//! healthy is asked for again. Against the Kubernetes API double (its own binary: the double's
//! request counter is per process).

use std::time::{Duration, Instant};

use kamaji_core::controlplane::Tenant;
use kamaji_core::ids::{TenantId, TenantName};
use kamaji_core::lifecycle::ports::Runtime;
use kamaji_core::pki::{mint, new_ca, TenantPkiSpec};
use kamaji_proto::v1;
use kamaji_testkit::kube_double::{requests_served, KubeDouble};
use kamajid::runtime::kubernetes::KubeRuntime;

fn spec() -> v1::TenantClusterSpec {
    v1::TenantClusterSpec {
        kubernetes_version: "1.37.2".into(),
        replicas: 1,
        network: Some(v1::Network {
            service_cidr: "10.96.0.0/12".into(),
            pod_cidr: "10.244.0.0/16".into(),
            dns_service_ip: "10.96.0.10".into(),
            port: 6443,
            service_type: v1::ServiceType::ClusterIp as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Requests the doubles served so far.
fn asked() -> u64 {
    let (admin, tenants) = requests_served();
    admin + tenants
}

#[tokio::test]
async fn a_healthy_tenant_is_checked_from_the_watch_and_a_broken_one_from_the_admin_cluster() {
    kamajid::server::install_crypto();
    let double = KubeDouble::admin_cluster();
    let base = double.start().await;
    let config = kube::Config::new(base.parse().unwrap());
    let rt = KubeRuntime::watching(kube::Client::try_from(config).unwrap());

    let s = kamaji_proto::tenant::from_stored(&spec()).unwrap();
    let (name, id) = (
        TenantName::parse("acme").unwrap(),
        TenantId::parse("acme-1").unwrap(),
    );
    let pki = mint(
        &TenantPkiSpec {
            tenant_id: id.clone(),
            service_cidr: "10.96.0.0/12".parse().unwrap(),
            dns_domain: "cluster.local".into(),
            external_sans: vec![],
            leaf_validity: kamaji_core::pki::LEAF_VALIDITY,
        },
        &new_ca("etcd").unwrap(),
    )
    .unwrap();
    let endpoints = vec!["https://10.0.0.1:2379".to_owned()];
    let t = Tenant {
        name: &name,
        id: &id,
        spec: &s,
        etcd_endpoints: &endpoints,
        etcd_ca_certificate: "",
        dns_domain: "cluster.local",
        issuer_base: None,
        address_known: true,
    };
    rt.apply(&t, &pki).await.unwrap();
    assert!(
        rt.status(&t).await.unwrap().ready,
        "the double rolls out at once"
    );

    // Once the watches hold the tenant's objects, a check asks the admin cluster nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = asked();
        let h = rt.health(&t).await.unwrap();
        assert!(h.ready, "{h:?}");
        if asked() == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "every check still asks the admin cluster"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = asked();
    for _ in 0..100 {
        assert!(rt.health(&t).await.unwrap().ready);
    }
    assert_eq!(asked(), before, "100 checks, no request");

    // Its pods go (someone else's change, seen by the watch): the check asks, and says so.
    let path = "/apis/apps/v1/namespaces/tenant-acme/deployments/control-plane";
    let mut d = double.get(path).expect("the applied deployment");
    d["status"]["availableReplicas"] = 0.into();
    double.put(path, d);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = asked();
        let h = rt.health(&t).await.unwrap();
        if !h.ready {
            assert!(asked() > before, "asked the admin cluster");
            assert!(h.message.contains("0/1"), "{}", h.message);
            break;
        }
        assert!(Instant::now() < deadline, "the watch never saw the pods go");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
