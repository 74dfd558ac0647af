//! Tenant clusters through the real `kamajid serve` binary's gRPC API: real etcd (state and a
//! shared datastore, secured) and a real admin cluster whose node runs the control plane as
//! pods; [`LoadBalancers`](acceptance_tests::admin_cluster::LoadBalancers) hands out the
//! `LoadBalancer` Service's address, as a cloud would.

use std::time::Duration;

use acceptance_tests::admin_cluster;
use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::*;
use kamaji_proto::v1::{self, TenantClusterPhase};
use tokio_stream::StreamExt;

fn tenant_spec(port: u16) -> v1::TenantClusterSpec {
    v1::TenantClusterSpec {
        kubernetes_version: k8s::newest(),
        replicas: 2,
        network: Some(v1::Network {
            service_cidr: "10.96.0.0/12".into(),
            pod_cidr: "10.244.0.0/16".into(),
            dns_service_ip: "10.96.0.10".into(),
            port: u32::from(port),
            service_type: v1::ServiceType::LoadBalancer as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kamajid_places_fences_and_runs_a_tenant_in_the_admin_cluster_and_removes_it_all() {
    let (admin_cluster, _pods, h) = admin_cluster::harness(vec![]).await;
    let admin_k = admin_cluster.kubectl();
    let port = free_port();
    let etcd = h.etcd("shard-a", EtcdSecurity::default()).await;
    let mut ds = h.client().await;
    h.register_datastore("shard-a", &etcd, 1 << 30).await;

    let mut t = h.tenants().await;
    t.create_tenant_cluster(v1::CreateTenantClusterRequest {
        name: "acme".into(),
        spec: Some(tenant_spec(port)),
        validate_only: false,
        planned_datastores: Vec::new(),
    })
    .await
    .expect("create tenant");
    let mut watch = t
        .watch_tenant_cluster(v1::WatchTenantClusterRequest {
            name: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let ready = loop {
        let next = tokio::time::timeout(Duration::from_secs(120), watch.next())
            .await
            .expect("not ready in time");
        let tc = next.expect("watch ended").expect("watch error");
        if tc.status.as_ref().unwrap().phase == TenantClusterPhase::Ready as i32 {
            break tc;
        }
    };
    let st = ready.status.unwrap();
    assert_eq!(st.datastore, "shard-a");
    let svc = admin_k.json(&["service", "kube-apiserver", "-n", "tenant-acme"]);
    let lb = svc["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .expect("the load balancer's address");
    let endpoint = format!("https://{lb}:{port}");
    assert_eq!(st.endpoint, endpoint, "endpoint from the LoadBalancer");
    assert_eq!(st.current_version, k8s::newest());

    // What kamajid applied to the admin cluster.
    let mut objects = admin_cluster.kamajid_objects();
    objects.sort();
    assert_eq!(
        objects,
        [
            "deployments/tenant-acme/control-plane",
            "namespaces//tenant-acme",
            "networkpolicies/tenant-acme/kube-apiserver-ingress",
            "poddisruptionbudgets/tenant-acme/control-plane",
            "secrets/tenant-acme/config",
            "secrets/tenant-acme/etcd-pki",
            "secrets/tenant-acme/kubeconfigs",
            "secrets/tenant-acme/pki",
            "services/tenant-acme/kube-apiserver",
        ]
    );
    let dep = admin_k.json(&["deployment", "control-plane", "-n", "tenant-acme"]);
    let args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        args.iter()
            .any(|a| a == &format!("--etcd-prefix=/{}", ready.uid)),
        "{args:?}"
    );
    assert!(args
        .iter()
        .any(|a| a == &format!("--etcd-servers={}", etcd.endpoint)));

    // The tenant's etcd user exists on the shared datastore.
    let tls = kamajid::etcd::EtcdTls {
        ca_pem: Some(h.pki.ca.cert.clone()),
        identity: Some((h.pki.root.cert.clone(), h.pki.root.key.clone())),
    };
    let mut admin = kamajid::etcd::connect(
        std::slice::from_ref(&etcd.endpoint),
        &tls,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(admin.user_get(ready.uid.as_str()).await.is_ok());
    let creds = t
        .get_tenant_cluster_credentials(v1::GetTenantClusterCredentialsRequest {
            name: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(creds
        .admin_kubeconfig
        .contains(&format!("server: {endpoint}")));
    let tenant = Kubectl::new(
        &h.dir.path().join("acme.kubeconfig"),
        &creds.admin_kubeconfig,
    );
    let ci = tenant.json(&["configmap", "cluster-info", "-n", "kube-public"]);
    assert!(ci["data"]["kubeconfig"]
        .as_str()
        .unwrap_or_default()
        .contains(&format!("server: {endpoint}")));

    // The datastore cannot go while the tenant lives on it.
    let err = ds
        .delete_datastore(v1::DeleteDatastoreRequest {
            name: "shard-a".into(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("acme"), "{}", err.message());

    // Delete: the namespace, the etcd user, role and keys, and the records all go.
    t.delete_tenant_cluster(v1::DeleteTenantClusterRequest {
        name: "acme".into(),
    })
    .await
    .unwrap();
    let mut gone = false;
    for _ in 0..120 {
        match t
            .get_tenant_cluster(v1::GetTenantClusterRequest {
                name: "acme".into(),
            })
            .await
        {
            Err(e) if e.code() == tonic::Code::NotFound => {
                gone = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    assert!(gone, "tenant not removed");
    assert!(
        admin_cluster.kamajid_objects().is_empty(),
        "objects left in the admin cluster: {:?}",
        admin_cluster.kamajid_objects()
    );
    assert!(
        admin.user_get(ready.uid.as_str()).await.is_err(),
        "etcd user left behind"
    );
    ds.delete_datastore(v1::DeleteDatastoreRequest {
        name: "shard-a".into(),
    })
    .await
    .expect("datastore free again");
}
