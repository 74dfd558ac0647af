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
use acceptance_tests::chart::{Installed, NAMESPACE};
use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::node;
use acceptance_tests::tunnel;
use acceptance_tests::*;

/// kamajid's NodePort on the host.
const KAMAJID_PORT: u16 = 31443;

/// Requests small enough that a two-core node holds every tenant here, a rollout's extra pod
/// too; `memory_limit` on the apiserver when given.
fn small(memory_limit: Option<&str>) -> String {
    // A request cannot exceed its limit.
    let (request, limit) = match memory_limit {
        Some(l) => ("32Mi", format!("\n      memory_limit   = \"{l}\"")),
        None => ("256Mi", String::new()),
    };
    format!(
        r#"  resources {{
    apiserver {{
      cpu_request    = "100m"
      memory_request = "{request}"{limit}
    }}
    controller_manager {{
      cpu_request = "20m"
    }}
    scheduler {{
      cpu_request = "10m"
    }}
  }}"#
    )
}

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
{extra}
  depends_on = [kamaji_datastore.a, kamaji_datastore.b]
}}
"#
    )
}

/// What the root module holds at each step.
#[derive(Clone)]
struct Config {
    alpha_datastore: &'static str,
    beta_version: String,
    /// gamma's apiserver memory limit; None: no gamma.
    gamma_limit: Option<&'static str>,
    /// delta: one more tenant with kamajid's default resources.
    delta: bool,
    /// delta hibernated: its Deployment scaled to nothing.
    delta_hibernated: bool,
    /// delta with a Konnectivity tunnel.
    delta_konnectivity: bool,
}

impl Config {
    fn render(&self, a: &str, b: &str) -> String {
        let mut out = format!(
            "{PROVIDER_HCL}\nvariable \"alpha_datastore\" {{\n  default = \"{}\"\n}}\n{}\n{}\n{}\n{}",
            self.alpha_datastore,
            DatastoreHcl::new("a", "shard-a", a).render(),
            DatastoreHcl::new("b", "shard-b", b).render(),
            tenant("alpha", &k8s::newest(), 1, "ClusterIP", &small(None)),
            tenant("beta", &self.beta_version, 2, "NodePort", &small(None))
                .replace("var.beta_datastore", "\"shard-b\""),
        );
        if let Some(limit) = self.gamma_limit {
            out.push_str(
                &tenant("gamma", &k8s::newest(), 1, "ClusterIP", &small(Some(limit)))
                    .replace("var.gamma_datastore", "\"shard-a\""),
            );
        }
        if self.delta {
            out.push_str(
                &tenant(
                    "delta",
                    &k8s::newest(),
                    1,
                    "ClusterIP",
                    if self.delta_hibernated {
                        "  hibernated = true"
                    } else {
                        ""
                    },
                )
                .replace("var.delta_datastore", "\"shard-a\"")
                .replace(
                    "service_type = \"ClusterIP\"\n",
                    if self.delta_konnectivity {
                        "service_type = \"ClusterIP\"\n    konnectivity = true\n"
                    } else {
                        "service_type = \"ClusterIP\"\n"
                    },
                ),
            );
        }
        out
    }
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
            let ready = p["status"]["phase"] == "Running" && k8s::pod_ready(p);
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

/// The names and uids of the tenant's pods, to tell whether anything was recreated.
fn pod_ids(admin: &Kubectl, tenant: &str) -> Vec<(String, String)> {
    let list = admin.json(&["pods", "-n", &format!("tenant-{tenant}")]);
    let mut out: Vec<(String, String)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["metadata"]["uid"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Restart counts of the tenant's containers, by pod and container.
fn restarts(admin: &Kubectl, tenant: &str) -> Vec<(String, i64)> {
    let list = admin.json(&["pods", "-n", &format!("tenant-{tenant}")]);
    let mut out = Vec::new();
    for p in list["items"].as_array().into_iter().flatten() {
        for c in p["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.push((
                format!(
                    "{}/{}",
                    p["metadata"]["name"].as_str().unwrap_or_default(),
                    c["name"].as_str().unwrap_or_default()
                ),
                c["restartCount"].as_i64().unwrap_or(-1),
            ));
        }
    }
    out.sort();
    out
}

async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls the tenant's `/version` every 200 ms until told to stop; returns the longest time
/// between two answers and how many polls went unanswered.
fn poll_gaps(
    kubeconfig: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<(Duration, u32)> {
    tokio::spawn(async move {
        let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("client config");
        let client = kube::Client::try_from(cfg).expect("client");
        let mut last = Instant::now();
        let (mut longest, mut missed) = (Duration::ZERO, 0);
        while !*stop.borrow() {
            let ok = tokio::time::timeout(Duration::from_secs(1), client.apiserver_version())
                .await
                .is_ok_and(|r| r.is_ok());
            if ok {
                longest = longest.max(last.elapsed());
                last = Instant::now();
            } else {
                missed += 1;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (longest.max(last.elapsed()), missed)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn kamajid_from_its_chart_runs_tenant_control_planes_as_real_pods() {
    ensure_built();
    kamajid::server::install_crypto();
    let mut admin = AdminCluster::with_node().await;
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
    let (a, b) = (shard_a.endpoint.clone(), shard_b.endpoint.clone());

    // kamajid from its chart: two replicas, the bundled state etcd, generated TLS, token, KEK.
    let start = Instant::now();
    let kamajid = Installed::install(&admin, KAMAJID_PORT, &["leaderLeaseSeconds=5".into()]);
    kamajid.await_ready_pods(2, 120).await;
    eprintln!(
        "figure: helm install to two Ready kamajid pods: {:?}",
        start.elapsed()
    );

    let w = kamajid.workdir(dir.path().join("tf"));
    pki.write(&w.dir).expect("pki files");
    let mut config = Config {
        alpha_datastore: "shard-a",
        beta_version: k8s::oldest(),
        gamma_limit: None,
        delta: false,
        delta_hibernated: false,
        delta_konnectivity: false,
    };
    w.write(&config.render(&a, &b));
    let start = Instant::now();
    w.must_apply();
    eprintln!(
        "figure: terraform apply of two tenants as pods: {:?}",
        start.elapsed()
    );

    // Both run as real pods of the imported images, Ready by their probes, and answer.
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
        kubeconfig_of(&w, label).must(&["get", "ns"]);
    }
    let alpha = w.resource("kamaji_tenant_cluster.alpha")["values"].clone();
    let beta = w.resource("kamaji_tenant_cluster.beta")["values"].clone();
    let beta_endpoint = beta["endpoint"].as_str().unwrap_or_default().to_owned();
    assert!(
        beta_endpoint.starts_with(&format!("https://{host}:3")),
        "a NodePort tenant is reached on the node's address and its node port: {beta_endpoint}"
    );
    // Each tenant's keys are under its own prefix on its shard.
    let alpha_uid = alpha["uid"].as_str().expect("uid").to_owned();
    let keys_a = shard::keys(&pki, &a).await;
    assert!(!keys_a.is_empty());
    assert!(
        keys_a
            .iter()
            .all(|k| k.starts_with(&format!("/{alpha_uid}/"))),
        "shard-a holds only alpha's keys: {:?}",
        &keys_a[..keys_a.len().min(5)]
    );
    let alpha_k = kubeconfig_of(&w, "alpha");
    alpha_k.must(&["create", "configmap", "survives", "--from-literal=k=v"]);

    // A tenant pod deleted: the Deployment replaces it and the tenant answers again.
    let before = pod_ids(&admin_k, "alpha");
    admin_k.must(&[
        "delete",
        "pod",
        "-n",
        "tenant-alpha",
        &before[0].0,
        "--wait=false",
    ]);
    until("alpha's pod replaced and Ready", 120, || {
        let pods = tenant_pods(&admin_k, "alpha");
        pods.len() == 1 && pods[0].2 && pods[0].0 != before[0].0
    })
    .await;
    alpha_k.eventually(&["get", "configmap", "survives"], 60);

    // kamajid's pod killed (no grace): the other replica serves and leads, the restarted one
    // joins, and nothing is recreated.
    let tenants_before = (pod_ids(&admin_k, "alpha"), pod_ids(&admin_k, "beta"));
    let kamajid_pods = kamajid.pods();
    admin_k.must(&[
        "delete",
        "pod",
        "-n",
        NAMESPACE,
        &kamajid_pods[0].0,
        "--grace-period=0",
        "--force",
    ]);
    // Until the endpoints and kube-proxy's rules drop the dead pod (about a second), a new
    // connection through the node port can still reach it and be refused, as with any Service;
    // the provider's reads wait for an answer, so the first plan succeeds.
    let died = Instant::now();
    let r = w.plan_code();
    assert_eq!(
        r.code,
        0,
        "the first plan after a kamajid pod died:\n{}",
        r.output()
    );
    eprintln!(
        "figure: the first plan after a kamajid pod was killed succeeded in {:?}",
        died.elapsed()
    );
    kamajid.await_ready_pods(2, 120).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        (pod_ids(&admin_k, "alpha"), pod_ids(&admin_k, "beta")),
        tenants_before,
        "a kamajid restart recreated tenant pods"
    );
    assert_eq!(
        w.resource("kamaji_tenant_cluster.alpha")["values"]["uid"],
        alpha["uid"]
    );

    // The kubelet killed and started again (no drain): the pods keep running, untouched.
    let restarts_before = (restarts(&admin_k, "alpha"), restarts(&admin_k, "beta"));
    admin.node.as_mut().expect("a node").restart_kubelet();
    until("the node Ready again", 120, || {
        admin_k
            .run(&[
                "get",
                "node",
                node::NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .stdout
            .trim()
            == "True"
    })
    .await;
    until(
        "the tenants' pods Ready after the kubelet restart",
        120,
        || {
            tenant_pods(&admin_k, "alpha").iter().all(|p| p.2)
                && tenant_pods(&admin_k, "beta").iter().filter(|p| p.2).count() == 2
        },
    )
    .await;
    assert_eq!(
        (restarts(&admin_k, "alpha"), restarts(&admin_k, "beta")),
        restarts_before,
        "containers restarted with the kubelet"
    );
    alpha_k.must(&["get", "configmap", "survives"]);

    // beta (two replicas) upgraded one minor through terraform: the Deployment rolls its pods
    // one at a time and the cluster keeps answering.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let beta_kubeconfig = beta["admin_kubeconfig"]
        .as_str()
        .expect("kubeconfig")
        .to_owned();
    let poller = poll_gaps(beta_kubeconfig, stop_rx);
    config.beta_version = k8s::newest();
    w.write(&config.render(&a, &b));
    let start = Instant::now();
    let applied = tokio::task::spawn_blocking({
        let w = Workdir {
            dir: w.dir.clone(),
            env: w.env.clone(),
        };
        move || w.apply()
    })
    .await
    .expect("apply");
    let took = start.elapsed();
    let _ = stop_tx.send(true);
    let (gap, missed) = poller.await.expect("poller");
    assert!(applied.ok(), "upgrade failed:\n{}", applied.output());
    eprintln!(
        "figure: upgrade of a 2-replica tenant {} -> {} in {took:?}; longest time without an answer (polled every 200 ms): {gap:?}, {missed} polls unanswered",
        k8s::oldest(),
        k8s::newest()
    );
    let pods = tenant_pods(&admin_k, "beta");
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(pods.iter().all(|(_, images, ready)| *ready
        && images[0] == format!("registry.k8s.io/kube-apiserver:v{}", k8s::newest())));
    assert!(
        gap < Duration::from_secs(15),
        "beta went unanswered for {gap:?} during its rolling upgrade"
    );

    // A memory limit below what kube-apiserver needs: the kernel kills it, kamajid says so,
    // and the apply ends with the reason instead of waiting out its timeout.
    config.gamma_limit = Some("40Mi");
    w.write(&config.render(&a, &b));
    let start = Instant::now();
    let r = w.apply();
    let out = r.output();
    assert!(!r.ok(), "gamma under a 40Mi limit became ready:\n{out}");
    assert!(
        out.contains("OOMKilled"),
        "the apply does not say why:\n{out}"
    );
    eprintln!(
        "figure: an apiserver OOM-killed under its limit ends the apply in {:?}",
        start.elapsed()
    );
    let terminated = admin_k.json(&["pods", "-n", "tenant-gamma"]);
    assert!(
        terminated.to_string().contains("OOMKilled"),
        "the kubelet did not report OOMKilled: {terminated:#}"
    );
    // Raised, it starts.
    config.gamma_limit = Some("1Gi");
    w.write(&config.render(&a, &b));
    w.must_apply();
    kubeconfig_of(&w, "gamma").must(&["get", "ns"]);

    // One tenant with kamajid's default resources: how long an apply takes to a tenant that
    // answers kubectl, and what its pod holds in memory once idle.
    config.delta = true;
    w.write(&config.render(&a, &b));
    let start = Instant::now();
    w.must_apply();
    let delta_k = kubeconfig_of(&w, "delta");
    delta_k.must(&["get", "ns"]);
    eprintln!(
        "figure: terraform apply to a kubectl-ready tenant (pods, default resources): {:?}",
        start.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    let delta_pod = admin_k.json(&["pods", "-n", "tenant-delta"])["items"][0].clone();
    let uid = delta_pod["metadata"]["uid"].as_str().expect("uid");
    let working_set = node::pod_working_set(uid).expect("the pod's memory cgroup");
    let requests: Vec<String> = delta_pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}: {}",
                c["name"].as_str().unwrap_or_default(),
                c["resources"]["requests"]
            )
        })
        .collect();
    let node_json = admin_k.json(&["node", node::NODE_NAME]);
    let allocatable = &node_json["status"]["allocatable"];
    eprintln!(
        "figure: an idle tenant's pod (default resources) uses {} MiB (cgroup working set); requests {requests:?}; node allocatable {allocatable}",
        working_set >> 20
    );

    // delta hibernated: its pod goes, its Deployment, Service, Secrets and data stay; woken, it
    // answers at the same endpoint with the same kubeconfig and what it stored.
    delta_k.must(&["create", "configmap", "before-sleep"]);
    let awake = w.resource("kamaji_tenant_cluster.delta")["values"].clone();
    config.delta_hibernated = true;
    w.write(&config.render(&a, &b));
    w.must_apply();
    let asleep = w.resource("kamaji_tenant_cluster.delta")["values"].clone();
    assert_eq!(asleep["status"], "Hibernated", "{asleep:#}");
    until("delta's pod gone", 120, || {
        tenant_pods(&admin_k, "delta").is_empty()
    })
    .await;
    let dep = admin_k.json(&["deployment", "control-plane", "-n", "tenant-delta"]);
    assert_eq!(dep["spec"]["replicas"], 0, "{dep:#}");
    assert!(
        !delta_k.run(&["get", "ns"]).ok,
        "a hibernated tenant answered"
    );
    config.delta_hibernated = false;
    w.write(&config.render(&a, &b));
    let start = Instant::now();
    w.must_apply();
    let woke = start.elapsed();
    let back = w.resource("kamaji_tenant_cluster.delta")["values"].clone();
    for kept in ["endpoint", "admin_kubeconfig", "cluster_ca_certificate"] {
        assert_eq!(back[kept], awake[kept], "delta's {kept} changed");
    }
    delta_k.must(&["get", "configmap", "before-sleep"]);
    eprintln!(
        "figure: hibernation freed delta's pod ({} MiB working set); waking it took {woke:?} from \
         terraform apply to Ready (a new pod)",
        working_set >> 20
    );

    // delta with a Konnectivity tunnel, in place: the server runs as a fourth container of its
    // pod, its Service gains the agents' port, and its apiserver reaches a kubelet-like
    // endpoint on this host only through an agent run here, dialing the address the agent
    // add-on inside delta is given: with the tunnel on, the apiserver sends what is for nodes
    // nowhere else, so without an agent the same request fails.
    config.delta_konnectivity = true;
    w.write(&config.render(&a, &b));
    w.must_apply();
    until(
        "delta's pod Ready with its konnectivity server",
        180,
        || {
            let pods = tenant_pods(&admin_k, "delta");
            pods.len() == 1 && pods[0].2 && pods[0].1.iter().any(|i| i.contains("proxy-server"))
        },
    )
    .await;
    let svc = admin_k.json(&["service", "kube-apiserver", "-n", "tenant-delta"]);
    assert!(
        svc["spec"]["ports"]
            .to_string()
            .contains("\"konnectivity\""),
        "{svc:#}"
    );
    let (host, port) = tunnel::agent_daemonset_target(&delta_k);
    let kdir = dir.path().join("tunnel");
    std::fs::create_dir_all(&kdir).unwrap();
    // The apiserver proxies to no loopback address: the node's own.
    let node_ip = node_json["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
        .and_then(|x| x["address"].as_str())
        .expect("the admin node's InternalIP")
        .to_owned();
    let kubelet_port = free_port();
    tunnel::kubelet_files(&kdir, &node_ip);
    let _kubelet = tunnel::spawn(
        &[],
        std::path::Path::new("openssl"),
        &tunnel::kubelet_args(&format!("{node_ip}:{kubelet_port}")),
        &kdir,
        &kdir.join("kubelet.log"),
    );
    tunnel::register_node(&delta_k, &node_ip, kubelet_port);
    let direct = tunnel::node_healthz(&delta_k);
    assert!(direct.is_err(), "reached without an agent: {direct:?}");
    let direct = direct.unwrap_err();
    let args = tunnel::agent_args(
        &delta_k,
        back["cluster_ca_certificate"].as_str().unwrap(),
        &kdir,
        &host,
        &port,
        &node_ip,
    );
    let agent = tunnel::spawn(
        &[],
        &tunnel::go_tool("konnectivity-agent"),
        &args,
        &kdir,
        &kdir.join("agent.log"),
    );
    let body = tunnel::until("delta's node /healthz through the tunnel", 90, || {
        tunnel::node_healthz(&delta_k).map_err(|e| {
            format!(
                "{e}\nagent log:\n{}",
                std::fs::read_to_string(kdir.join("agent.log")).unwrap_or_default()
            )
        })
    });
    assert!(body.contains(tunnel::HEALTHZ), "{body}");
    let logs = delta_k.must(&["logs", "p", "-c", "c"]);
    assert!(logs.contains(tunnel::LOG_LINE), "{logs}");
    drop(agent);
    tunnel::until(
        "a refusal once the agent is gone",
        60,
        || match tunnel::node_healthz(&delta_k) {
            Ok(b) => Err(format!("still answered: {b}")),
            Err(_) => Ok(()),
        },
    );
    eprintln!(
        "figure: delta's apiserver (in its pod) reached a node through its konnectivity-server \
         container and an agent dialing {host}:{port}; without an agent: {}",
        direct.trim()
    );

    // alpha moved to shard-b: kamajid copies its keys, the real Deployment controller re-rolls
    // its control plane onto the new etcd, and what it stored is still there.
    config.alpha_datastore = "shard-b";
    w.write(&config.render(&a, &b));
    let before = pod_ids(&admin_k, "alpha");
    w.must_apply();
    let moved = w.resource("kamaji_tenant_cluster.alpha")["values"].clone();
    assert_eq!(moved["datastore"], "shard-b");
    assert_ne!(
        pod_ids(&admin_k, "alpha"),
        before,
        "the control plane was not re-rolled"
    );
    let dep = admin_k.json(&["deployment", "control-plane", "-n", "tenant-alpha"]);
    assert!(
        dep.to_string().contains(&format!("--etcd-servers={b}")),
        "alpha's pods do not point at shard-b"
    );
    alpha_k.eventually(&["get", "configmap", "survives"], 60);
    assert!(
        !shard::keys(&pki, &a)
            .await
            .iter()
            .any(|k| k.starts_with(&format!("/{alpha_uid}/"))),
        "alpha's keys are still on shard-a"
    );

    // Destroy: every tenant namespace finalized by the real namespace controller, nothing left
    // on either shard.
    let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "destroy failed:\n{}", r.output());
    for t in ["alpha", "beta", "gamma", "delta"] {
        let r = admin_k.run(&["get", "namespace", &format!("tenant-{t}")]);
        assert!(
            !r.ok && r.stderr.contains("NotFound"),
            "tenant-{t}: {}{}",
            r.stdout,
            r.stderr
        );
    }
    for e in [&a, &b] {
        assert_eq!(
            shard::leftovers(&pki, e).await,
            (vec![], vec![], 0),
            "{e} keeps users, roles or keys"
        );
    }
}
