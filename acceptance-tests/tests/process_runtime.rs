//! The process runtime on the real Kubernetes programs, through the real `terraform` CLI, a real
//! `kamajid serve` and real etcd shards: kube-apiserver, kube-controller-manager and
//! kube-scheduler at the versions in `tools/k8s-build/VERSIONS` (built from the
//! `k8s.io/kubernetes` Go module, see `scripts/k8s-binaries.sh`), and kubectl to talk to them as a
//! user would.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::*;
use kamaji_proto::v1;

fn pid_of(pids: &[(PathBuf, u32)], tenant: &str, component: &str) -> u32 {
    pids.iter()
        .find(|(f, _)| f.ends_with(format!("{tenant}/{component}.pid")))
        .unwrap_or_else(|| panic!("no {component} of {tenant} in {pids:?}"))
        .1
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn tenant_hcl(label: &str, name: &str, version: &str, extra: &str) -> String {
    format!(
        "resource \"kamaji_tenant_cluster\" \"{label}\" {{\n  name               = \"{name}\"\n  kubernetes_version = \"{version}\"\n  datastore          = kamaji_datastore.a.name\n{extra}}}\n"
    )
}

fn kubectl_for(w: &Workdir, address: &str, file: &str) -> Kubectl {
    let v = w.resource(address)["values"].clone();
    Kubectl::new(
        &w.dir.join(file),
        v["admin_kubeconfig"].as_str().expect("admin_kubeconfig"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn real_control_planes_answer_kubectl_keep_to_their_prefix_and_survive_faults() {
    let root = tempfile::tempdir().unwrap();
    let (mut h, tenants_dir, base) =
        Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 0).await;
    let _reaper = Reaper(tenants_dir.clone());
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    let version = k8s::newest();
    let w = h.workdir("local");
    // Names that share a start: the trailing '/' of each etcd prefix must keep them apart.
    let config = format!(
        "{PROVIDER_HCL}\n{}\n{}\n{}",
        ds.render(),
        tenant_hcl("team", "team", &version, ""),
        tenant_hcl("team_a", "team-a", &version, "")
    );
    w.write(&config);
    w.must_apply();

    // Ready at a port of the range on this host, its files private, its flags the pod ones.
    let team = w.resource("kamaji_tenant_cluster.team")["values"].clone();
    assert_eq!(team["status"], "Ready", "{team:#}");
    let endpoint = team["endpoint"].as_str().unwrap().to_owned();
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    assert!(
        (base..base + 100).contains(&port),
        "{port} outside the range"
    );
    let dir = tenants_dir.join("team");
    assert_eq!(mode(&dir), 0o700);
    for f in [
        "pki/ca.key",
        "pki/apiserver.key",
        "pki/sa.key",
        "pki/etcd/client.key",
        "scheduler.conf",
        "kube-apiserver.cmd",
        "kube-apiserver.pid",
        "kube-apiserver.log",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let pids = pids_under(&tenants_dir);
    assert_eq!(pids.len(), 6, "{pids:?}");
    let uid = team["uid"].as_str().unwrap().to_owned();
    let api_pid = pid_of(&pids, "team", "kube-apiserver");
    let args = cmdline(api_pid);
    assert!(
        args[0].ends_with(&format!("v{version}/kube-apiserver")),
        "{args:?}"
    );
    for want in [
        format!("--etcd-prefix=/{uid}"),
        format!("--etcd-servers={}", shard.endpoint),
        format!("--secure-port={port}"),
    ] {
        assert!(args.contains(&want), "{want} not in {args:?}");
    }

    // The admin kubeconfig terraform returned works as a user expects of a new cluster.
    let team_k = kubectl_for(&w, "kamaji_tenant_cluster.team", "team.kubeconfig");
    let team_a_k = kubectl_for(&w, "kamaji_tenant_cluster.team_a", "team-a.kubeconfig");
    let ns = team_k.must(&["get", "ns", "-o", "name"]);
    for want in [
        "namespace/default",
        "namespace/kube-system",
        "namespace/kube-public",
    ] {
        assert!(ns.lines().any(|l| l == want), "{want} not in {ns}");
    }
    assert_eq!(team_k.must(&["auth", "can-i", "*", "*"]).trim(), "yes");
    team_k.must(&["create", "namespace", "shop"]);
    team_k.must(&[
        "-n",
        "shop",
        "create",
        "configmap",
        "settings",
        "--from-literal=colour=teal",
    ]);
    team_k.must(&[
        "-n",
        "shop",
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2",
    ]);
    team_a_k.must(&["create", "namespace", "only-a"]);
    // The controller manager really runs: it gives a new namespace its default ServiceAccount.
    // The scheduler really runs: with no node to offer, it marks a new pod unschedulable. Both
    // hold their leader Leases.
    team_k.eventually(&["-n", "shop", "get", "serviceaccount", "default"], 60);
    team_k.must(&[
        "-n",
        "shop",
        "run",
        "probe",
        "--image=registry.k8s.io/pause:3.10",
        "--restart=Never",
    ]);
    team_k.must(&[
        "-n",
        "shop",
        "wait",
        "--for=condition=PodScheduled=false",
        "pod/probe",
        "--timeout=60s",
    ]);
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        team_k.eventually(&["-n", "kube-system", "get", "lease", lease], 60);
    }
    // Pods on workers reach the apiserver through the `kubernetes` Service, whose endpoint the
    // apiserver publishes: this host (kube-apiserver refuses the loopback advertise address, so
    // it picks the host's own) and the tenant's own port.
    let slice = team_k.json(&["-n", "default", "endpointslice", "kubernetes"]);
    let ip: std::net::IpAddr = slice["endpoints"][0]["addresses"][0]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no endpoint address: {slice:#}"));
    assert!(!ip.is_loopback(), "{slice:#}");
    assert_eq!(slice["ports"][0]["port"], port, "{slice:#}");
    // What plan-time validation of `network.dns_service_ip` rests on, shown by the real
    // apiserver: no Service gets the service range's network address, broadcast address or
    // first address (the `kubernetes` Service's), and another is free.
    for (ip, svc) in [
        ("10.96.0.0", "net"),
        ("10.111.255.255", "bcast"),
        ("10.96.0.1", "first"),
    ] {
        let r = team_k.run(&[
            "create",
            "service",
            "clusterip",
            svc,
            "--tcp=53:53",
            &format!("--clusterip={ip}"),
        ]);
        assert!(!r.ok, "the apiserver gave {ip} to a Service: {r:?}");
    }
    team_k.must(&[
        "create",
        "service",
        "clusterip",
        "tenth",
        "--tcp=53:53",
        "--clusterip=10.96.0.20",
    ]);
    // Bootstrapped for kubeadm join by kamajid, through the real apiserver.
    team_k.must(&["-n", "kube-public", "get", "configmap", "cluster-info"]);

    // Neither tenant sees the other.
    let r = team_a_k.run(&["get", "namespace", "shop"]);
    assert!(!r.ok && r.stderr.contains("NotFound"), "{r:?}");
    let r = team_k.run(&["get", "namespace", "only-a"]);
    assert!(!r.ok && r.stderr.contains("NotFound"), "{r:?}");

    // In the shard, read with its root certificate: every key is under one tenant's prefix, the
    // ConfigMap is under team's, team-a's namespace only under team-a's.
    let uid_a = w.resource("kamaji_tenant_cluster.team_a")["values"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys = h.shard_keys(&shard.endpoint).await;
    let (p, pa) = (format!("/{uid}/"), format!("/{uid_a}/"));
    assert!(!p.starts_with(&pa) && !pa.starts_with(&p));
    let outside: Vec<&String> = keys
        .iter()
        .filter(|k| !k.starts_with(&p) && !k.starts_with(&pa))
        .collect();
    assert!(
        outside.is_empty(),
        "keys outside the tenants' prefixes: {outside:?}"
    );
    assert!(
        keys.contains(&format!("{p}configmaps/shop/settings")),
        "{keys:?}"
    );
    assert!(keys.contains(&format!("{p}secrets/shop/db")), "{keys:?}");
    let only_a: Vec<&String> = keys.iter().filter(|k| k.contains("only-a")).collect();
    assert!(
        !only_a.is_empty() && only_a.iter().all(|k| k.starts_with(&pa)),
        "{only_a:?}"
    );

    // kill -9 of an apiserver: the supervisor starts a new one, and the cluster answers again.
    std::process::Command::new("kill")
        .args(["-9", &api_pid.to_string()])
        .status()
        .unwrap();
    let api_file = dir.join("kube-apiserver.pid");
    wait_for("a new apiserver", Duration::from_secs(30), || {
        std::fs::read_to_string(&api_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .is_some_and(|p| p != api_pid && alive(p))
    })
    .await;
    let cm = team_k.eventually(
        &[
            "-n",
            "shop",
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.data.colour}",
        ],
        90,
    );
    assert_eq!(cm, "teal");

    // Nothing the apiserver does is outside its role: its log holds no refused request (it used
    // to retry a compaction through `compact_rev_key`, outside its prefix, once a second).
    let log = std::fs::read_to_string(dir.join("kube-apiserver.log")).expect("apiserver log");
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("permission denied"))
        .take(5)
        .collect();
    assert!(
        refused.is_empty(),
        "the apiserver was refused: {refused:#?}"
    );

    // kamajid killed and restarted (`serve`): the running processes are adopted, not restarted.
    let before = pids_under(&tenants_dir);
    h.restart_kamajid();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = pids_under(&tenants_dir);
    assert_eq!(before, after, "processes restarted with kamajid");
    assert!(after.iter().all(|(_, p)| alive(*p)));
    assert_eq!(w.plan_code().code, 0, "re-plan not empty");
    team_k.must(&["get", "ns"]);

    // A version with no binaries is refused when written (and at plan), naming what is there;
    // nothing is created.
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
    let refused = t
        .create_tenant_cluster(v1::CreateTenantClusterRequest {
            name: "old".into(),
            spec: Some(old),
            validate_only: false,
            planned_datastores: Vec::new(),
        })
        .await
        .expect_err("a version without binaries is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let message = refused.message();
    assert!(
        message.contains("no kube-apiserver for Kubernetes v1.34.1")
            && message.contains(&format!("v{version}")),
        "{message}"
    );
    assert!(!tenants_dir.join("old").exists());
    assert_eq!(
        t.get_tenant_cluster(v1::GetTenantClusterRequest { name: "old".into() })
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );

    // Destroy ends the processes, removes the directories, and leaves nothing on the shard.
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
        Duration::from_secs(30),
        || std::fs::read_dir(&tenants_dir).map_or(true, |mut d| d.next().is_none()),
    )
    .await;
    assert_eq!(
        h.shard_leftovers(&shard.endpoint).await,
        (vec![], vec![], 0),
        "left on the shard"
    );
}

/// The SANs of the certificate served at `port`, read by openssl.
fn served_sans(port: u16) -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-showcerts",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let pem = String::from_utf8_lossy(&out.stdout).into_owned();
    String::from_utf8_lossy(&openssl(
        &["x509", "-noout", "-ext", "subjectAltName"],
        pem.as_bytes(),
    ))
    .into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn real_control_planes_take_new_sans_and_upgrade_in_place_keeping_data() {
    let root = tempfile::tempdir().unwrap();
    let (h, tenants_dir, _) = Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 1).await;
    let _reaper = Reaper(tenants_dir.clone());
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    let (from, to) = (k8s::oldest(), k8s::newest());
    assert_ne!(from, to, "tools/k8s-build/VERSIONS needs two minors");
    let w = h.workdir("upgrade");
    let sans = |names: &str| format!("  network {{\n    extra_sans = [{names}]\n  }}\n");
    let config = |version: &str, names: &str| {
        format!(
            "{PROVIDER_HCL}\n{}\n{}",
            ds.render(),
            tenant_hcl("up", "up", version, &sans(names))
        )
    };
    w.write(&config(&from, "\"old.example\""));
    w.must_apply();
    let k = kubectl_for(&w, "kamaji_tenant_cluster.up", "up.kubeconfig");
    k.must(&["create", "configmap", "keep", "--from-literal=k=v"]);
    let endpoint = w.resource("kamaji_tenant_cluster.up")["values"]["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    assert!(served_sans(port).contains("DNS:old.example"));

    // A new SAN in place: the running apiserver (same process) serves a certificate with it, and
    // the kubeconfig keeps working throughout.
    let api_before = pid_of(&pids_under(&tenants_dir), "up", "kube-apiserver");
    w.write(&config(&from, "\"old.example\", \"new.example\""));
    let plan = w.plan_json();
    assert_eq!(
        planned_actions(&plan)["kamaji_tenant_cluster.up"],
        ["update"]
    );
    w.must_apply();
    let start = Instant::now();
    while !served_sans(port).contains("DNS:new.example") {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the apiserver never served the new SAN: {}",
            served_sans(port)
        );
        k.must(&["get", "configmap", "keep"]);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(
        pid_of(&pids_under(&tenants_dir), "up", "kube-apiserver"),
        api_before,
        "the apiserver was restarted for a SAN"
    );
    k.must(&["get", "configmap", "keep"]);

    // One minor up through terraform: the server reports the new version and the data is there.
    w.write(&config(&to, "\"old.example\", \"new.example\""));
    let plan = w.plan_json();
    assert_eq!(
        planned_actions(&plan)["kamaji_tenant_cluster.up"],
        ["update"]
    );
    w.must_apply();
    let v: serde_json::Value =
        serde_json::from_str(&k.eventually(&["version", "-o", "json"], 90)).unwrap();
    assert_eq!(v["serverVersion"]["gitVersion"], format!("v{to}"), "{v:#}");
    assert_eq!(
        k.must(&["get", "configmap", "keep", "-o", "jsonpath={.data.k}"]),
        "v"
    );
    let up = w.resource("kamaji_tenant_cluster.up")["values"].clone();
    assert_eq!(up["current_version"], to.as_str(), "{up:#}");
    assert_eq!(w.plan_code().code, 0, "re-plan after the upgrade not empty");

    // Destroy waits for the apiserver's graceful shutdown (or ends it) and leaves nothing.
    let running: Vec<u32> = pids_under(&tenants_dir)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(running.len(), 3);
    let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "destroy:\n{}", r.output());
    for pid in running {
        assert!(!alive(pid), "process {pid} left running");
    }
    assert_eq!(
        h.shard_leftovers(&shard.endpoint).await,
        (vec![], vec![], 0),
        "left on the shard"
    );
}
