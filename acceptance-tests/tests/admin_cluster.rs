//! The Kubernetes runtime against a real admin cluster, through the real terraform (or tofu) CLI:
//! a real kube-apiserver and kube-controller-manager judge every object kamajid applies with
//! server-side apply, and a real node runs the tenants' control planes as pods; each tenant
//! answers kubectl at the address kamajid derives from its Service, through kube-proxy.
//! [`LoadBalancers`] plays the cloud's load-balancer controller (it only hands out addresses).

use std::time::{Duration, Instant};

use acceptance_tests::admin_cluster::{AdminCluster, LoadBalancers};
use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::node;
use acceptance_tests::*;

/// What server-side apply recorded about who owns an object's fields: `(manager, operation)`.
fn managers(obj: &serde_json::Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default().to_owned(),
                m["operation"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn tenant_hcl(label: &str, name: &str, version: &str, replicas: u32, network: &str) -> String {
    format!(
        "resource \"kamaji_tenant_cluster\" \"{label}\" {{\n  name = \"{name}\"\n  kubernetes_version = \"{version}\"\n  replicas = {replicas}\n  datastore = kamaji_datastore.a.name\n  network {{\n{network}  }}\n{SMALL}\n  timeouts {{\n    create = \"0.1h\"\n    update = \"5m\"\n  }}\n}}\n"
    )
}

/// Requests small enough for every replica here (and a rollout's extra pods) on a two-core node.
const SMALL: &str = "  resources {\n    apiserver {\n      cpu_request = \"100m\"\n      memory_request = \"256Mi\"\n    }\n    controller_manager {\n      cpu_request = \"20m\"\n    }\n    scheduler {\n      cpu_request = \"10m\"\n    }\n  }";

/// Whether an HTTPS request to `url` from local address `from` gets any answer (kube-proxy
/// drops what a load balancer's source ranges do not admit).
fn answers_from(from: &str, url: &str) -> bool {
    std::process::Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "--max-time",
            "4",
            "--interface",
            from,
            url,
        ])
        .status()
        .is_ok_and(|s| s.success())
}

async fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_admin_cluster_takes_every_object_patches_in_place_and_is_left_empty() {
    let admin = AdminCluster::with_node().await;
    let _lbs = LoadBalancers::start(&admin);
    let host = node::host_ip();
    let h = Harness::start_from(Start {
        kube: Some(admin.kubeconfig.clone()),
        // Drift repair every few seconds, so the test sees kamajid take a field back.
        extra_args: vec!["--resync-seconds=3".into()],
        etcd_host: Some(host),
        ..Default::default()
    })
    .await;
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    let (old, new) = (k8s::oldest(), k8s::newest());
    // One tenant per Service type: the LoadBalancer one reached at the balancer's address, the
    // NodePort one at the node's address and node port, the ClusterIP one at its cluster IP
    // (this host reaches cluster IPs through kube-proxy).
    let ports = [free_port(), free_port(), free_port()];
    // The LoadBalancer one admits only some networks: this host's address among them (the test
    // and kamajid reach it from there).
    let lb = format!(
        "    port = {}\n    service_type = \"LoadBalancer\"\n    authorized_networks = [\"{host}/32\", \"203.0.113.0/24\"]\n",
        ports[0]
    );
    let np = format!("    port = {}\n    service_type = \"NodePort\"\n", ports[1]);
    let cip = format!(
        "    port = {}\n    service_type = \"ClusterIP\"\n",
        ports[2]
    );
    let config = |lb_version: &str, np_replicas: u32, cip_sans: &str| {
        format!(
            "{PROVIDER_HCL}\n{}\n{}\n{}\n{}",
            ds.render(),
            tenant_hcl("lb", "lb", lb_version, 2, &lb),
            tenant_hcl("np", "np", &old, np_replicas, &np),
            tenant_hcl("cip", "cip", &old, 1, &format!("{cip}{cip_sans}")),
        )
    };
    let w = h.workdir("admin");
    w.write(&config(&old, 1, ""));
    w.must_apply();
    let kubectl = admin.kubectl();

    // Every rendered object was accepted by the real apiserver, applied by kamajid alone.
    for t in ["lb", "np", "cip"] {
        let ns = format!("tenant-{t}");
        let nsobj = kubectl.json(&["namespace", &ns, "--show-managed-fields"]);
        assert_eq!(managers(&nsobj), [("kamajid".into(), "Apply".into())]);
        for (kind, name) in [
            ("secret", "pki"),
            ("secret", "etcd-pki"),
            ("secret", "kubeconfigs"),
            ("secret", "config"),
            ("deployment", "control-plane"),
            ("service", "kube-apiserver"),
            ("networkpolicy", "kube-apiserver-ingress"),
            ("poddisruptionbudget", "control-plane"),
        ] {
            let obj = kubectl.json(&[kind, name, "-n", &ns, "--show-managed-fields"]);
            let m = managers(&obj);
            assert!(
                m.contains(&("kamajid".into(), "Apply".into())),
                "{kind}/{name} in {ns}: {m:?}"
            );
            assert_eq!(
                obj["metadata"]["labels"]["app.kubernetes.io/managed-by"], "kamajid",
                "{kind}/{name}"
            );
        }
        let svc = kubectl.json(&["service", "kube-apiserver", "-n", &ns]);
        let want = match t {
            "lb" => "LoadBalancer",
            "np" => "NodePort",
            _ => "ClusterIP",
        };
        assert_eq!(svc["spec"]["type"], want);
        // The fence of authorized networks, as the real apiserver stored it.
        let np = kubectl.json(&["networkpolicy", "kube-apiserver-ingress", "-n", &ns]);
        let from = &np["spec"]["ingress"][0]["from"];
        if t == "lb" {
            assert_eq!(
                svc["spec"]["loadBalancerSourceRanges"],
                serde_json::json!([format!("{host}/32"), "203.0.113.0/24"])
            );
            assert_eq!(svc["spec"]["externalTrafficPolicy"], "Local");
            assert_eq!(from[0]["ipBlock"]["cidr"], format!("{host}/32"), "{np:#}");
            assert_eq!(from[1]["ipBlock"]["cidr"], "203.0.113.0/24", "{np:#}");
            assert_eq!(
                from[2]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "kamajid",
                "kamajid still reaches the tenant: {np:#}"
            );
        } else {
            assert!(svc["spec"]["loadBalancerSourceRanges"].is_null(), "{svc:#}");
            assert!(from.is_null(), "open to any: {np:#}");
        }
    }
    // Each tenant answers at its endpoint with the kubeconfig terraform returned, and was
    // bootstrapped there for kubeadm join.
    let mut tenant_kubectl = Vec::new();
    for (t, port) in ["lb", "np", "cip"].into_iter().zip(ports) {
        let v = w.resource(&format!("kamaji_tenant_cluster.{t}"))["values"].clone();
        assert_eq!(v["status"], "Ready", "{v:#}");
        let svc = kubectl.json(&["service", "kube-apiserver", "-n", &format!("tenant-{t}")]);
        let want = match t {
            "lb" => format!(
                "https://{}:{port}",
                svc["status"]["loadBalancer"]["ingress"][0]["ip"]
                    .as_str()
                    .unwrap()
            ),
            "np" => format!("https://{host}:{}", svc["spec"]["ports"][0]["nodePort"]),
            _ => format!(
                "https://{}:{port}",
                svc["spec"]["clusterIP"].as_str().unwrap()
            ),
        };
        assert_eq!(v["endpoint"], want, "{t}");
        let k = Kubectl::new(
            &w.dir.join(format!("{t}.kubeconfig")),
            v["admin_kubeconfig"].as_str().unwrap(),
        );
        k.must(&["get", "ns", "kube-system"]);
        k.must(&["get", "configmap", "cluster-info", "-n", "kube-public"]);
        tenant_kubectl.push(k);
    }
    // kamajid watches its Deployments and Services in the real admin cluster (the routine
    // health checks read the watch), and no watch was refused.
    let log = std::fs::read_to_string(h.dir.path().join("kamajid.log")).unwrap();
    for kind in ["Deployment", "Service"] {
        assert!(
            log.lines().any(
                |l| l.contains("watching kamajid's objects in the admin cluster")
                    && l.contains(kind)
            ),
            "no watch of {kind}s listed:\n{log}"
        );
    }
    assert!(!log.contains("watching the admin cluster"), "{log}");
    // The pod layout's flags are what run: the apiserver's certificate files from the mounted
    // Secrets, the tenant's etcd prefix.
    let lb_uid = w.resource("kamaji_tenant_cluster.lb")["values"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let pods = kubectl.json(&["pods", "-n", "tenant-lb"]);
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "two replicas run");
    for p in items {
        let api = &p["spec"]["containers"][0];
        assert_eq!(
            api["image"],
            format!("registry.k8s.io/kube-apiserver:v{old}")
        );
        assert!(
            api["args"]
                .to_string()
                .contains(&format!("--etcd-prefix=/{lb_uid}")),
            "{api:#}"
        );
        assert_eq!(p["status"]["phase"], "Running");
    }
    // The load balancer admits the authorized networks only: kube-proxy drops the rest. (The
    // NetworkPolicy is stored as rendered; the bridge CNI here does not enforce policies.)
    let lb_url = format!(
        "{}/healthz",
        w.resource("kamaji_tenant_cluster.lb")["values"]["endpoint"]
            .as_str()
            .unwrap()
    );
    assert!(
        answers_from(&host.to_string(), &lb_url),
        "refused from an authorized network"
    );
    for (ip, admitted) in [("203.0.113.77", true), ("192.0.2.250", false)] {
        let _ = std::process::Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .status();
        let got = answers_from(ip, &lb_url);
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", &format!("{ip}/32"), "dev", "lo"])
            .status();
        assert_eq!(got, admitted, "a client at {ip}");
    }

    // One apply changes all three in place: an upgrade, a replica change and a new SAN. The real
    // apiserver takes each patch with no conflict; the plan after it is empty.
    w.write(&config(&new, 3, "    extra_sans = [\"api.cip.example\"]\n"));
    let plan = planned_actions(&w.plan_json());
    for t in ["lb", "np", "cip"] {
        assert_eq!(
            plan[&format!("kamaji_tenant_cluster.{t}")],
            ["update"],
            "{plan:?}"
        );
    }
    w.must_apply();
    let lb_dep = kubectl.json(&["deployment", "control-plane", "-n", "tenant-lb"]);
    let images: Vec<&str> = lb_dep["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["image"].as_str().unwrap())
        .collect();
    assert!(
        images.iter().all(|i| i.ends_with(&format!(":v{new}"))),
        "{images:?}"
    );
    // Right after the rollout, kube-proxy may not yet route the load balancer to the new pod
    // (it syncs its rules a moment after the endpoints change): a client retries, as kubectl
    // users do.
    let version: serde_json::Value =
        serde_json::from_str(&tenant_kubectl[0].eventually(&["get", "--raw", "/version"], 30))
            .unwrap();
    assert_eq!(version["gitVersion"], format!("v{new}"));
    let np_dep = kubectl.json(&["deployment", "control-plane", "-n", "tenant-np"]);
    assert_eq!(np_dep["spec"]["replicas"], 3);
    let pki = kubectl.json(&["secret", "pki", "-n", "tenant-cip"]);
    let cert = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(pki["data"]["apiserver.crt"].as_str().unwrap())
            .unwrap()
    };
    let sans = openssl(&["x509", "-noout", "-ext", "subjectAltName"], &cert);
    let sans = String::from_utf8_lossy(&sans);
    assert!(sans.contains("api.cip.example"), "{sans}");
    tenant_kubectl[2].must(&["get", "ns", "default"]);
    assert_eq!(w.plan_code().code, 0, "plan after the update is not empty");

    // A second field manager: applying a field kamajid owns is a conflict the apiserver refuses;
    // forcing it (here `kubectl scale`) works until kamajid's next resync takes the field back.
    // A field kamajid does not set (a label of the operator's) stays.
    let theirs = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"control-plane","namespace":"tenant-np"},"spec":{"replicas":5}}"#;
    let r = kubectl.run_with(
        &["apply", "--server-side", "--field-manager=ops", "-f", "-"],
        Some(theirs),
    );
    assert!(
        !r.ok && r.stderr.contains("conflict"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    kubectl.must(&[
        "scale",
        "deployment",
        "control-plane",
        "-n",
        "tenant-np",
        "--replicas=5",
    ]);
    kubectl.must(&[
        "label",
        "deployment",
        "control-plane",
        "-n",
        "tenant-np",
        "ops.example/owner=team-x",
    ]);
    wait_until("kamaji to take spec.replicas back", 60, || {
        kubectl.json(&["deployment", "control-plane", "-n", "tenant-np"])["spec"]["replicas"] == 3
    })
    .await;
    let np_dep = kubectl.json(&["deployment", "control-plane", "-n", "tenant-np"]);
    assert_eq!(np_dep["metadata"]["labels"]["ops.example/owner"], "team-x");

    // Destroy: every tenant namespace is finalized by the real namespace controller, and
    // nothing kamajid made is left anywhere in the admin cluster.
    let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "destroy failed:\n{}", r.output());
    for t in ["lb", "np", "cip"] {
        let r = kubectl.run(&["get", "namespace", &format!("tenant-{t}")]);
        assert!(
            !r.ok && r.stderr.contains("NotFound"),
            "{}{}",
            r.stdout,
            r.stderr
        );
    }
    for kind in [
        "namespaces",
        "secrets",
        "deployments",
        "services",
        "networkpolicies",
        "poddisruptionbudgets",
    ] {
        let left = kubectl.json(&[kind, "-A", "-l", "app.kubernetes.io/managed-by=kamajid"]);
        assert_eq!(
            left["items"].as_array().map(Vec::len),
            Some(0),
            "{kind} left: {left:#}"
        );
    }
    assert_eq!(
        h.shard_leftovers(&shard.endpoint).await,
        (vec![], vec![], 0)
    );
}
