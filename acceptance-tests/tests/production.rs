//! The production shape, for real: an admin cluster whose node (containerd, runc, the Debian CNI
//! plugins, the kubelet and kube-proxy) runs pods from images built here from this repository's
//! binaries; kamajid installed into it by its Helm chart, with the chart's bundled state etcd;
//! tenants created through terraform whose control planes run as real pods, on two etcd shards
//! that serve on the host's address.
//!
//! What only a real kubelet decides is exercised here: Secret volumes as it mounts them, the
//! non-root users of the images, the rendered probes against the real components, memory limits
//! enforced by the kernel, rolling updates by the real Deployment controller, Services through
//! kube-proxy, kamajid under its ServiceAccount and RBAC.

use std::time::{Duration, Instant};

use acceptance_tests::admin_cluster::AdminCluster;
use acceptance_tests::chart::{self, Installed};
use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::node;
use acceptance_tests::*;

/// kamajid's NodePort on the host.
const KAMAJID_PORT: u16 = 31443;

fn tenant(label: &str, version: &str, replicas: u32, service_type: &str, extra: &str) -> String {
    format!(
        r#"resource "kamaji_tenant_cluster" "{label}" {{
  name               = "{label}"
  kubernetes_version = "{version}"
  replicas           = {replicas}
  datastore          = var.{label}_datastore
  network {{
    service_type = "{service_type}"
  }}
  resources {{
    apiserver {{
      cpu_request    = "100m"
      memory_request = "256Mi"
    }}
    controller_manager {{
      cpu_request = "20m"
    }}
    scheduler {{
      cpu_request = "10m"
    }}
  }}
{extra}
  depends_on = [kamaji_datastore.a, kamaji_datastore.b]
}}
"#
    )
}

/// The tenants' pods in the admin cluster: name, the images of its containers, Running and Ready.
fn tenant_pods(admin: &Kubectl, tenant: &str) -> Vec<(String, Vec<String>, bool)> {
    let list = admin.json(&["pods", "-n", &format!("tenant-{tenant}")]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let images = p["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c["image"].as_str().unwrap_or_default().to_owned())
                .collect();
            let ready = p["status"]["phase"] == "Running"
                && p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                images,
                ready,
            )
        })
        .collect()
}

fn kubeconfig_of(w: &Workdir, label: &str) -> Kubectl {
    let v = w.resource(&format!("kamaji_tenant_cluster.{label}"))["values"].clone();
    Kubectl::new(
        &w.dir.join(format!("{label}.kubeconfig")),
        v["admin_kubeconfig"].as_str().expect("admin_kubeconfig"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kamajid_from_its_chart_runs_tenant_control_planes_as_real_pods() {
    ensure_built();
    let admin = AdminCluster::with_node().await;
    let admin_k = admin.kubectl();
    let host = node::host_ip();

    // Two shards on the host's address, where the tenants' pods reach them.
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = DevPki::generate_for(&[&host.to_string()]).expect("pki");
    let shard_a = EtcdProcess::start_on(dir.path(), "shard-a", &pki, EtcdSecurity::default(), host)
        .await
        .expect("shard a");
    let shard_b = EtcdProcess::start_on(dir.path(), "shard-b", &pki, EtcdSecurity::default(), host)
        .await
        .expect("shard b");

    // kamajid from its chart: two replicas, the bundled state etcd, generated TLS, token, KEK.
    let start = Instant::now();
    let kamajid = Installed::install(&admin, KAMAJID_PORT, &["leaderLeaseSeconds=5".into()]);
    kamajid.await_ready_pods(2, 120).await;
    eprintln!(
        "helm install to two Ready kamajid pods: {:?}",
        start.elapsed()
    );

    let w = kamajid.workdir(dir.path().join("tf"));
    pki.write(&w.dir).expect("pki files");
    let config = |alpha_version: &str, beta_version: &str| {
        format!(
            "{PROVIDER_HCL}\nvariable \"alpha_datastore\" {{\n  default = \"shard-a\"\n}}\nvariable \"beta_datastore\" {{\n  default = \"shard-b\"\n}}\n{}\n{}\n{}\n{}",
            DatastoreHcl::new("a", "shard-a", &shard_a.endpoint).render(),
            DatastoreHcl::new("b", "shard-b", &shard_b.endpoint).render(),
            tenant("alpha", alpha_version, 1, "ClusterIP", ""),
            tenant("beta", beta_version, 2, "NodePort", ""),
        )
    };
    w.write(&config(&k8s::newest(), &k8s::oldest()));
    let start = Instant::now();
    w.must_apply();
    eprintln!(
        "terraform apply of two tenants as pods: {:?}",
        start.elapsed()
    );

    for (label, replicas, version) in [("alpha", 1, k8s::newest()), ("beta", 2, k8s::oldest())] {
        let pods = tenant_pods(&admin_k, label);
        assert_eq!(pods.len(), replicas, "{label}: {pods:?}");
        for (name, images, ready) in &pods {
            assert!(ready, "{label}: pod {name} not Running and Ready");
            assert_eq!(
                images,
                &[
                    format!("registry.k8s.io/kube-apiserver:v{version}"),
                    format!("registry.k8s.io/kube-controller-manager:v{version}"),
                    format!("registry.k8s.io/kube-scheduler:v{version}"),
                ],
                "{label}: {name}"
            );
        }
        let k = kubeconfig_of(&w, label);
        k.must(&["get", "ns"]);
    }
    let beta = w.resource("kamaji_tenant_cluster.beta")["values"].clone();
    let beta_endpoint = beta["endpoint"].as_str().unwrap_or_default();
    assert!(
        beta_endpoint.starts_with(&format!("https://{host}:3")),
        "a NodePort tenant is reached on the node's address and its node port: {beta_endpoint}"
    );
}
