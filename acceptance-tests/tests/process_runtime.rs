//! The process runtime through the real `terraform` CLI and a real kamajid and etcd. No
//! Kubernetes binary can be installed here: the components are the stand-in program
//! (`src/bin/k8s-standin.rs`), which checks the files its flags name, serves TLS health
//! endpoints, answers the Kubernetes API with the test double (for bootstrap), and can be told to
//! exit.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use acceptance_tests::*;
use kamaji_proto::v1;
use kamajid::devenv::EtcdSecurity;
use kamajid::runtime::process::{https_status, COMPONENTS};

/// A bin dir with the stand-in as the three components of `version`.
fn bin_dir(root: &Path, version: &str) -> PathBuf {
    let dir = root.join("k8s-bin").join(format!("v{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    for c in COMPONENTS {
        std::fs::copy(bin_dir_of_build().join("k8s-standin"), dir.join(c)).unwrap();
    }
    std::fs::write(dir.join("VERSION"), version).unwrap();
    root.join("k8s-bin")
}

fn bin_dir_of_build() -> PathBuf {
    acceptance_tests::bin_dir()
}

/// Kills whatever the tenants' PID files name when the test ends, even on failure: tenant
/// processes outlive kamajid by design.
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in pids_under(&self.0).into_iter().map(|(_, p)| p) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
}

/// `(file, pid)` of every PID file under the process dir.
fn pids_under(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(t.path()).into_iter().flatten().flatten() {
            if f.path().extension().is_some_and(|x| x == "pid") {
                if let Some(pid) = std::fs::read_to_string(f.path())
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                {
                    out.push((f.path(), pid));
                }
            }
        }
    }
    out.sort();
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next());
            !matches!(state, Some(Some('Z' | 'X')))
        })
        .unwrap_or(false)
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_run_as_supervised_local_processes_that_survive_kamajid() {
    let root = tempfile::tempdir().unwrap();
    let bins = bin_dir(root.path(), "1.35.2");
    let tenants_dir = root.path().join("tenants");
    let _reaper = Reaper(tenants_dir.clone());
    let base = 20000 + (std::process::id() % 400) as u16 * 100;
    let mut h = Harness::start_with_args(
        None,
        vec![
            "--runtime=process".into(),
            format!("--k8s-bin-dir={}", bins.display()),
            format!("--process-dir={}", tenants_dir.display()),
            format!("--process-port-range={base}-{}", base + 99),
        ],
    )
    .await;
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    let w = h.workdir("local");
    let config = format!(
        "{PROVIDER_HCL}\n{}\nresource \"kamaji_tenant_cluster\" \"acme\" {{\n  name               = \"acme\"\n  kubernetes_version = \"1.35.2\"\n  datastore          = kamaji_datastore.a.name\n}}\n",
        ds.render()
    );
    w.write(&config);
    w.must_apply();

    // Ready at a port of the range on this host, its files private, its flags the pod ones.
    let acme = w.resource("kamaji_tenant_cluster.acme")["values"].clone();
    assert_eq!(acme["status"], "Ready", "{acme:#}");
    let endpoint = acme["endpoint"].as_str().unwrap().to_owned();
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    assert!(
        (base..base + 100).contains(&port),
        "{port} outside the range"
    );
    let dir = tenants_dir.join("acme");
    assert_eq!(mode(&dir), 0o700);
    for f in [
        "pki/ca.key",
        "pki/apiserver.key",
        "pki/sa.key",
        "pki/etcd/client.key",
        "scheduler.conf",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let ca = acme["cluster_ca_certificate"].as_str().unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(https_status(addr, "/readyz", Some(ca)).await, Ok(200));
    let pids = pids_under(&tenants_dir);
    assert_eq!(pids.len(), 3, "{pids:?}");
    let uid = acme["uid"].as_str().unwrap();
    let api_pid = pids
        .iter()
        .find(|(f, _)| f.ends_with("kube-apiserver.pid"))
        .unwrap()
        .1;
    let args = cmdline(api_pid);
    assert!(args[0].ends_with("v1.35.2/kube-apiserver"), "{args:?}");
    for want in [
        format!("--etcd-prefix=/{uid}"),
        format!("--etcd-servers={}", shard.endpoint),
        format!("--secure-port={port}"),
        format!(
            "--tls-cert-file={}",
            dir.join("pki/apiserver.crt").display()
        ),
    ] {
        assert!(args.contains(&want), "{want} not in {args:?}");
    }
    let mut t = h.tenants().await;
    let tc = t
        .get_tenant_cluster(v1::GetTenantClusterRequest {
            name: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        tc.status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.r#type == "TenantBootstrapped"
                && c.status == v1::ConditionStatus::True as i32),
        "not bootstrapped"
    );

    // A component that dies is restarted.
    let _ = https_status(addr, "/standin/exit", None).await;
    wait_for("the apiserver to exit", Duration::from_secs(10), || {
        !alive(api_pid)
    })
    .await;
    let api_file = dir.join("kube-apiserver.pid");
    wait_for("a new apiserver", Duration::from_secs(15), || {
        std::fs::read_to_string(&api_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .is_some_and(|p| p != api_pid && alive(p))
    })
    .await;
    let start = Instant::now();
    while https_status(addr, "/readyz", Some(ca)).await != Ok(200) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "/readyz not back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // kamajid killed and restarted: the running processes are adopted, not restarted.
    let before = pids_under(&tenants_dir);
    h.restart_kamajid();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = pids_under(&tenants_dir);
    assert_eq!(before, after, "processes restarted with kamajid");
    assert!(after.iter().all(|(_, p)| alive(*p)));
    assert_eq!(w.plan_code().code, 0, "re-plan not empty");

    // A flag change replaces only the process it concerns, with the new flags.
    let apiserver_of = |pids: &[(PathBuf, u32)]| {
        pids.iter()
            .find(|(f, _)| f.ends_with("kube-apiserver.pid"))
            .unwrap()
            .1
    };
    w.write(&config.replace(
        "  datastore          = kamaji_datastore.a.name\n",
        "  datastore          = kamaji_datastore.a.name\n  extra_args {\n    apiserver = { \"audit-log-maxage\" = \"30\" }\n  }\n",
    ));
    w.must_apply();
    let replaced = pids_under(&tenants_dir);
    let new_api = apiserver_of(&replaced);
    assert_ne!(new_api, apiserver_of(&after), "apiserver not replaced");
    assert!(!alive(apiserver_of(&after)), "the old apiserver still runs");
    assert!(cmdline(new_api).contains(&"--audit-log-maxage=30".to_owned()));
    for (f, pid) in &replaced {
        if !f.ends_with("kube-apiserver.pid") {
            assert!(
                after.contains(&(f.clone(), *pid)),
                "{} restarted needlessly",
                f.display()
            );
        }
    }
    assert_eq!(https_status(addr, "/readyz", Some(ca)).await, Ok(200));
    assert_eq!(w.plan_code().code, 0, "re-plan not empty");

    // A version with no binaries gets a clear status, not a crash loop.
    let mut t = h.tenants().await;
    let mut old = v1::TenantClusterSpec {
        kubernetes_version: "1.34.1".into(),
        replicas: 1,
        datastore: "shard".into(),
        network: Some(v1::Network {
            service_cidr: "10.96.0.0/12".into(),
            pod_cidr: "10.244.0.0/16".into(),
            dns_service_ip: "10.96.0.10".into(),
            port: 6443,
            service_type: v1::ServiceType::LoadBalancer as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    old.addons = None;
    t.create_tenant_cluster(v1::CreateTenantClusterRequest {
        name: "old".into(),
        spec: Some(old),
    })
    .await
    .unwrap();
    let start = Instant::now();
    let message = loop {
        let tc = t
            .get_tenant_cluster(v1::GetTenantClusterRequest { name: "old".into() })
            .await
            .unwrap()
            .into_inner();
        let st = tc.status.unwrap();
        let failed = st
            .conditions
            .iter()
            .find(|c| c.r#type == "Reconciled" && c.status == v1::ConditionStatus::False as i32)
            .map(|c| c.message.clone());
        if let (true, Some(m)) = (st.phase == v1::TenantClusterPhase::Degraded as i32, failed) {
            break m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never Degraded: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        message.contains("no kube-apiserver for Kubernetes v1.34.1") && message.contains("v1.35.2"),
        "{message}"
    );
    assert!(!tenants_dir.join("old").join("kube-apiserver.pid").exists());
    t.delete_tenant_cluster(v1::DeleteTenantClusterRequest { name: "old".into() })
        .await
        .unwrap();

    // Destroy ends the processes by their PIDs and removes the directory.
    let running: Vec<u32> = pids_under(&tenants_dir)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "destroy:\n{}", r.output());
    for pid in running {
        assert!(!alive(pid), "process {pid} left running");
    }
    wait_for(
        "the tenant directories to go",
        Duration::from_secs(15),
        || !dir.exists() && !tenants_dir.join("old").exists(),
    )
    .await;
}
