//! Hibernation on the real programs: terraform, a real etcd shard and a real control plane
//! (the newest version built from the `k8s.io/kubernetes` module, run by kamajid's process
//! runtime). `hibernated = true` stops the three components and keeps everything else;
//! `false` brings the cluster back at the same endpoint, with the same credentials and its
//! objects (a Secret read back decrypted). What needs the control plane is refused at plan.

use std::time::Instant;

use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::*;

/// The PIDs of `tenant`'s components, from the process runtime's PID files.
fn pids(tenants_dir: &std::path::Path, tenant: &str) -> Vec<u32> {
    [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ]
    .iter()
    .filter_map(|c| {
        std::fs::read_to_string(tenants_dir.join(tenant).join(format!("{c}.pid")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
}

/// Proportional set size of `pid`, KiB (0 once it is gone).
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hibernated_cluster_stops_its_control_plane_and_wakes_with_its_data_and_credentials() {
    let root = tempfile::tempdir().unwrap();
    let (h, tenants_dir, _) = Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 0).await;
    let _reaper = Reaper(tenants_dir.clone());
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    let version = k8s::newest();
    let hcl = |hibernated: bool, extra: &str| {
        format!(
            r#"{PROVIDER_HCL}
{}
resource "kamaji_tenant_cluster" "t" {{
  name               = "sleepy"
  kubernetes_version = "{version}"
  datastore          = kamaji_datastore.a.name
  hibernated         = {hibernated}
  network {{}}
{extra}}}
"#,
            ds.render()
        )
    };
    let w = h.workdir("hibernation");
    w.write(&hcl(false, ""));
    w.must_apply();
    let awake = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    assert_eq!(awake["status"], "Ready");
    assert_eq!(awake["hibernated"], false);
    let admin = Kubectl::new(
        &w.dir.join("admin.kubeconfig"),
        awake["admin_kubeconfig"].as_str().unwrap(),
    );
    admin.must(&["create", "configmap", "kept", "--from-literal=k=v"]);
    admin.must(&[
        "create",
        "secret",
        "generic",
        "token",
        "--from-literal=s=t0p",
    ]);
    let running = pids(&tenants_dir, "sleepy");
    assert_eq!(running.len(), 3, "{running:?}");
    let pss: u64 = running.iter().map(|p| pss_kib(*p)).sum();

    // Asleep: no process, the endpoint refuses, and the state says so.
    w.write(&hcl(true, ""));
    let start = Instant::now();
    w.must_apply();
    let slept = start.elapsed();
    let asleep = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    assert_eq!(asleep["status"], "Hibernated", "{asleep:#}");
    assert!(
        running.iter().all(|p| !alive(*p)),
        "the components still run: {running:?}"
    );
    let r = admin.run(&["get", "configmaps"]);
    assert!(!r.ok, "a hibernated apiserver answered: {}", r.stdout);
    for kept in [
        "endpoint",
        "admin_kubeconfig",
        "cluster_ca_certificate",
        "uid",
        "datastore",
    ] {
        assert_eq!(asleep[kept], awake[kept], "{kept} changed");
    }
    assert_eq!(
        w.plan_code().code,
        0,
        "a hibernated cluster plans no change"
    );

    // What needs the control plane is refused at plan, naming the attribute and the way out.
    w.write(&hcl(true, "  encryption {\n    key_rotation = 1\n  }\n"));
    let plan = w.plan_code();
    assert_eq!(plan.code, 1, "{}", plan.output());
    assert!(
        plan.output().contains("key_rotation") && plan.output().contains("hibernated = false"),
        "{}",
        plan.output()
    );

    // Awake: the same endpoint and credentials, and the objects written before.
    w.write(&hcl(false, ""));
    let start = Instant::now();
    w.must_apply();
    let woke = start.elapsed();
    let back = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    assert_eq!(back["status"], "Ready");
    for kept in ["endpoint", "admin_kubeconfig", "cluster_ca_certificate"] {
        assert_eq!(back[kept], awake[kept], "{kept} changed");
    }
    let cm = admin.json(&["configmap", "kept"]);
    assert_eq!(cm["data"]["k"], "v");
    let secret = admin.json(&["secret", "token"]);
    assert_eq!(
        secret["data"]["s"], "dDBw",
        "base64 of t0p, decrypted by the apiserver"
    );
    admin.must(&["create", "configmap", "after-waking"]);
    assert_eq!(w.plan_code().code, 0, "a woken cluster plans no change");
    eprintln!(
        "hibernation: the three components held {} MiB (PSS) and were stopped by an apply of \
         {slept:?}; waking took {woke:?} from apply to Ready",
        pss / 1024
    );
}
