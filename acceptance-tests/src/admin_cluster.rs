//! A real admin cluster on loopback: kube-apiserver and kube-controller-manager (the newest
//! version tests run) on their own etcd, for kamajid's Kubernetes runtime. The apiserver is the
//! real judge of what kamajid applies (schemas, immutable fields, field ownership, conflicts); its
//! namespace controller decides when a deleted tenant's namespace is really gone.
//!
//! No kubelet can run pods here. [`PodRunner`] stands in for the kubelet, the Deployment
//! controller and a cloud load balancer, and for nothing else: for each control-plane Deployment
//! kamajid applied, it runs the pod template's three containers as local processes of the real
//! programs (their `command` and `args` as rendered, the Secrets of its volumes written to disk and
//! the mount paths moved under a directory), reports the Deployment rolled out once the apiserver
//! answers `/readyz`, and gives `LoadBalancer` Services the address `127.0.0.1`. So the pod
//! layout's flags really run, and the tenant answers at the address kamajid derives from the
//! Service. Limits: one set of processes per Deployment whatever `replicas` says (the status it
//! reports counts every replica available); the controller-manager's and scheduler's health
//! ports are moved to free ones so tenants can share the host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kamaji_core::ids::TenantId;
use kamaji_core::pki::{kubeconfig, mint, TenantPkiSpec};

use crate::k8s::{self, Kubectl};
use crate::node::{self, Join, Node};
use crate::{free_port, write_private, DevPki, EtcdProcess, EtcdSecurity};

/// Controllers of the admin cluster without a node: all but the two whose part [`PodRunner`]
/// plays (they would otherwise overwrite the Deployment status it reports).
const CONTROLLERS: &str = "*,-deployment-controller,-replicaset-controller";

pub struct AdminCluster {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    /// `https://127.0.0.1:<port>`
    pub endpoint: String,
    /// cluster-admin (`system:masters`) kubeconfig.
    pub kubeconfig: String,
    /// The node that runs pods, with [`AdminCluster::with_node`].
    pub node: Option<Node>,
    _etcd: EtcdProcess,
    procs: Vec<Child>,
}

impl Drop for AdminCluster {
    fn drop(&mut self) {
        // The node first: its kubelet must not see the apiserver go and its pods must stop.
        self.node.take();
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

fn spawn(bin: &Path, args: &[String], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()))
}

impl AdminCluster {
    /// Starts the admin cluster (apiserver and controller-manager, no node) in a directory of
    /// its own and waits until it serves.
    pub async fn start() -> Self {
        Self::start_shaped(false).await
    }

    /// Starts an admin cluster that runs pods: apiserver, every controller, scheduler, and a
    /// [`Node`] (containerd, kubelet, kube-proxy, CoreDNS) on this machine, which has every
    /// image imported. The apiserver also listens on [`node::host_ip`], where pods reach it.
    pub async fn with_node() -> Self {
        Self::start_shaped(true).await
    }

    async fn start_shaped(with_node: bool) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let dev = DevPki::generate().expect("dev pki");
        // Its own etcd: client certificates required, no per-user auth (a dedicated etcd).
        let etcd = EtcdProcess::start(
            &dir,
            "etcd",
            &dev,
            EtcdSecurity {
                client_cert_auth: true,
                auth: false,
                ..Default::default()
            },
        )
        .await
        .expect("the admin cluster's etcd");
        let pki = mint(
            &TenantPkiSpec {
                tenant_id: TenantId::parse("admin").expect("an id"),
                service_cidr: "10.0.0.0/24".into(),
                dns_domain: "cluster.local".into(),
                external_sans: vec![
                    "127.0.0.1".into(),
                    "localhost".into(),
                    node::host_ip().to_string(),
                ],
                leaf_validity: kamaji_core::pki::LEAF_VALIDITY,
            },
            &dev.ca,
        )
        .expect("admin cluster PKI");
        let file = |name: &str, content: &str| {
            let p = dir.join(name);
            write_private(&p, content);
            p.display().to_string()
        };
        let port = free_port();
        let endpoint = format!("https://127.0.0.1:{port}");
        let version = k8s::newest();
        let api_args = vec![
            format!("--etcd-servers={}", etcd.endpoint),
            format!("--etcd-cafile={}", file("etcd-ca.crt", &dev.ca.cert)),
            format!("--etcd-certfile={}", file("etcd.crt", &dev.root.cert)),
            format!("--etcd-keyfile={}", file("etcd.key", &dev.root.key)),
            format!(
                "--bind-address={}",
                if with_node { "0.0.0.0" } else { "127.0.0.1" }
            ),
            format!("--secure-port={port}"),
            format!("--service-cluster-ip-range={}", node::SERVICE_CIDR),
            format!("--client-ca-file={}", file("ca.crt", &pki.ca.cert)),
            format!(
                "--tls-cert-file={}",
                file("apiserver.crt", &pki.apiserver.cert)
            ),
            format!(
                "--tls-private-key-file={}",
                file("apiserver.key", &pki.apiserver.key)
            ),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!(
                "--service-account-key-file={}",
                file("sa.pub", &pki.service_account_pub)
            ),
            format!(
                "--service-account-signing-key-file={}",
                file("sa.key", &pki.service_account_key)
            ),
            "--authorization-mode=Node,RBAC".into(),
        ];
        let mut api_args = api_args;
        if with_node {
            api_args.extend([
                format!("--advertise-address={}", node::host_ip()),
                "--enable-admission-plugins=NodeRestriction".into(),
                // Logs, exec and port-forward: the apiserver calls the kubelet as cluster-admin.
                format!(
                    "--kubelet-client-certificate={}",
                    file("kubelet-client.crt", &pki.admin.cert)
                ),
                format!(
                    "--kubelet-client-key={}",
                    file("kubelet-client.key", &pki.admin.key)
                ),
            ]);
        } else {
            api_args.push(format!("--advertise-address={}", "127.0.0.1"));
        }
        let apiserver = spawn(
            &k8s::program(&version, "kube-apiserver"),
            &api_args,
            &dir.join("kube-apiserver.log"),
        );
        let cm_conf = file(
            "controller-manager.conf",
            &kubeconfig(
                "admin",
                &endpoint,
                &pki.ca.cert,
                "system:kube-controller-manager",
                &pki.controller_manager,
            ),
        );
        let cm_args = vec![
            format!("--kubeconfig={cm_conf}"),
            format!("--authentication-kubeconfig={cm_conf}"),
            format!("--authorization-kubeconfig={cm_conf}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port()),
            format!(
                "--controllers={}",
                if with_node { "*" } else { CONTROLLERS }
            ),
            "--leader-elect=false".into(),
            format!("--root-ca-file={}", dir.join("ca.crt").display()),
            format!(
                "--service-account-private-key-file={}",
                dir.join("sa.key").display()
            ),
            "--use-service-account-credentials=true".into(),
        ];
        let admin_kubeconfig = kubeconfig(
            "admin",
            &endpoint,
            &pki.ca.cert,
            "kubernetes-admin",
            &pki.admin,
        );
        let mut cluster = Self {
            _tmp: tmp,
            dir: dir.clone(),
            endpoint,
            kubeconfig: admin_kubeconfig,
            node: None,
            _etcd: etcd,
            procs: vec![apiserver],
        };
        let kubectl = cluster.kubectl();
        let start = Instant::now();
        while !kubectl.run(&["get", "--raw", "/readyz"]).ok {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "the admin cluster's kube-apiserver did not become ready; see {}",
                dir.join("kube-apiserver.log").display()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        cluster.procs.push(spawn(
            &k8s::program(&version, "kube-controller-manager"),
            &cm_args,
            &dir.join("kube-controller-manager.log"),
        ));
        if with_node {
            let sched_conf = file(
                "scheduler.conf",
                &kubeconfig(
                    "admin",
                    &cluster.endpoint,
                    &pki.ca.cert,
                    "system:kube-scheduler",
                    &pki.scheduler,
                ),
            );
            cluster.procs.push(spawn(
                &k8s::program(&version, "kube-scheduler"),
                &[
                    format!("--kubeconfig={sched_conf}"),
                    format!("--authentication-kubeconfig={sched_conf}"),
                    format!("--authorization-kubeconfig={sched_conf}"),
                    "--bind-address=127.0.0.1".into(),
                    format!("--secure-port={}", free_port()),
                    "--leader-elect=false".into(),
                ],
                &dir.join("kube-scheduler.log"),
            ));
            let server = format!("https://{}:{port}", node::host_ip());
            cluster.node = Some(
                Node::start(&Join {
                    server: &server,
                    ca: &pki.ca,
                    admin: &pki.admin,
                })
                .await,
            );
        }
        cluster
    }

    /// kubectl as cluster-admin of the admin cluster.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(&self.dir.join("admin.kubeconfig"), &self.kubeconfig)
    }
}

/// Plays the kubelet, the Deployment controller and a cloud load balancer for the control-plane
/// Deployments kamajid applies (see the module docs). Stops its processes when dropped.
pub struct PodRunner {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pods: Arc<Mutex<HashMap<String, Pod>>>,
}

/// The processes run for one Deployment, at one generation.
struct Pod {
    generation: i64,
    procs: Vec<(String, Child)>,
    /// Where the controller-manager's kubeconfig was written: probes the apiserver.
    probe_kubeconfig: PathBuf,
    ready_reported: bool,
}

impl Drop for Pod {
    fn drop(&mut self) {
        for (_, p) in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

impl Drop for PodRunner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Ok(mut pods) = self.pods.lock() {
            pods.clear();
        }
    }
}

impl PodRunner {
    pub fn start(admin: &AdminCluster) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let pods: Arc<Mutex<HashMap<String, Pod>>> = Arc::default();
        let kubectl = admin.kubectl();
        let dir = admin.dir.join("pods");
        let (s, p) = (stop.clone(), pods.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                reconcile_pods(&kubectl, &dir, &p);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Self {
            stop,
            thread: Some(thread),
            pods,
        }
    }

    /// The program paths of the processes running for tenant namespace `ns`, with their args.
    pub fn commands(&self, ns: &str) -> Vec<Vec<String>> {
        let pods = self.pods.lock().expect("pods");
        pods.get(ns)
            .map(|p| {
                p.procs
                    .iter()
                    .map(|(_, c)| {
                        std::fs::read(format!("/proc/{}/cmdline", c.id()))
                            .unwrap_or_default()
                            .split(|b| *b == 0)
                            .filter(|a| !a.is_empty())
                            .map(|a| String::from_utf8_lossy(a).into_owned())
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn reconcile_pods(kubectl: &Kubectl, dir: &Path, pods: &Mutex<HashMap<String, Pod>>) {
    let list = kubectl.run(&[
        "get",
        "deployments",
        "-A",
        "-l",
        "app.kubernetes.io/managed-by=kamajid",
        "-o",
        "json",
    ]);
    if !list.ok {
        return;
    }
    let Ok(list) = serde_json::from_str::<serde_json::Value>(&list.stdout) else {
        return;
    };
    let deployments: Vec<serde_json::Value> = list["items"].as_array().cloned().unwrap_or_default();
    let Ok(mut pods) = pods.lock() else {
        return;
    };
    // Deployments gone (their namespace deleted): their processes go too.
    pods.retain(|ns, _| {
        deployments
            .iter()
            .any(|d| d["metadata"]["namespace"].as_str() == Some(ns))
    });
    for d in &deployments {
        let ns = d["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let generation = d["metadata"]["generation"].as_i64().unwrap_or(0);
        if pods.get(&ns).map(|p| p.generation) != Some(generation) {
            pods.remove(&ns);
            if let Some(pod) = start_pod(kubectl, dir, &ns, generation, d) {
                pods.insert(ns.clone(), pod);
            }
        }
        expose_load_balancer(kubectl, &ns);
        if let Some(pod) = pods.get_mut(&ns) {
            if !pod.ready_reported && pod_ready(pod) {
                let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
                let status = serde_json::json!({"status": {
                    "observedGeneration": generation,
                    "replicas": want,
                    "updatedReplicas": want,
                    "readyReplicas": want,
                    "availableReplicas": want,
                }});
                let r = kubectl.run(&[
                    "patch",
                    "deployment",
                    "control-plane",
                    "-n",
                    &ns,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &status.to_string(),
                ]);
                pod.ready_reported = r.ok;
            }
        }
    }
}

/// Gives a `LoadBalancer` Service the loopback address, as a cloud controller would give it one.
fn expose_load_balancer(kubectl: &Kubectl, ns: &str) {
    let svc = kubectl.run(&["get", "service", "kube-apiserver", "-n", ns, "-o", "json"]);
    let Ok(svc) = serde_json::from_str::<serde_json::Value>(&svc.stdout) else {
        return;
    };
    if svc["spec"]["type"] == "LoadBalancer"
        && svc["status"]["loadBalancer"]["ingress"][0]["ip"] != "127.0.0.1"
    {
        let _ = kubectl.run(&[
            "patch",
            "service",
            "kube-apiserver",
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"127.0.0.1"}]}}}"#,
        ]);
    }
}

fn pod_ready(pod: &mut Pod) -> bool {
    let running = pod
        .procs
        .iter_mut()
        .all(|(_, c)| matches!(c.try_wait(), Ok(None)));
    running
        && Command::new(k8s::program(&k8s::newest(), "kubectl"))
            .arg("--kubeconfig")
            .arg(&pod.probe_kubeconfig)
            .args(["get", "--raw", "/readyz", "--request-timeout=3s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Runs the pod template of Deployment `d` in namespace `ns`: its Secret volumes written under
/// a directory, its containers' commands with the mount paths moved there.
fn start_pod(
    kubectl: &Kubectl,
    dir: &Path,
    ns: &str,
    generation: i64,
    d: &serde_json::Value,
) -> Option<Pod> {
    let root = dir.join(format!("{ns}-{generation}"));
    let spec = &d["spec"]["template"]["spec"];
    let mut secret_of_volume = HashMap::new();
    for v in spec["volumes"].as_array()? {
        secret_of_volume.insert(
            v["name"].as_str()?.to_owned(),
            v["secret"]["secretName"].as_str()?.to_owned(),
        );
    }
    let mut mounts: Vec<(String, String)> = Vec::new();
    let mut procs = Vec::new();
    let mut probe_kubeconfig = PathBuf::new();
    for c in spec["containers"].as_array()? {
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let (name, path) = (m["name"].as_str()?, m["mountPath"].as_str()?);
            if mounts.iter().any(|(p, _)| p == path) {
                continue;
            }
            let secret = kubectl.run(&[
                "get",
                "secret",
                &secret_of_volume[name],
                "-n",
                ns,
                "-o",
                "json",
            ]);
            let secret: serde_json::Value = serde_json::from_str(&secret.stdout).ok()?;
            let target = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(&target).ok()?;
            for (file, b64) in secret["data"].as_object()? {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.as_str()?)
                    .ok()?;
                write_private(&target.join(file), &String::from_utf8_lossy(&bytes));
            }
            mounts.push((path.to_owned(), target.display().to_string()));
        }
    }
    // Longest mount path first, so `/etc/kubernetes/pki/etcd` is moved before `/etc/kubernetes/pki`.
    mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    for c in spec["containers"].as_array()? {
        let name = c["name"].as_str()?.to_owned();
        let image = c["image"].as_str()?;
        let version = image.rsplit_once(":v")?.1;
        let program = c["command"][0].as_str()?;
        let args: Vec<String> = c["args"]
            .as_array()?
            .iter()
            .filter_map(|a| a.as_str())
            .map(|a| {
                let (flag, value) = a.split_once('=').unwrap_or((a, ""));
                if name != "kube-apiserver" && flag == "--secure-port" {
                    return format!("--secure-port={}", free_port());
                }
                // A path under a mount moves with it, once, under the longest mount it is in.
                match mounts
                    .iter()
                    .find(|(from, _)| value.starts_with(from.as_str()))
                {
                    Some((from, to)) => format!("{flag}={to}{}", &value[from.len()..]),
                    None => a.to_owned(),
                }
            })
            .collect();
        if name == "kube-controller-manager" {
            if let Some(k) = args.iter().find_map(|a| a.strip_prefix("--kubeconfig=")) {
                probe_kubeconfig = PathBuf::from(k);
            }
        }
        let log = root.join(format!("{name}.log"));
        let child = spawn(&k8s::program(version, program), &args, &log);
        procs.push((name, child));
    }
    Some(Pod {
        generation,
        procs,
        probe_kubeconfig,
        ready_reported: false,
    })
}

/// A kamajid whose admin cluster is a real one, with [`PodRunner`] running its tenants' pods;
/// `extra` are more `kamajid serve` flags.
pub async fn harness(extra: Vec<String>) -> (AdminCluster, PodRunner, crate::Harness) {
    let admin = AdminCluster::start().await;
    let pods = PodRunner::start(&admin);
    let h = crate::Harness::start_with_args(Some(admin.kubeconfig.clone()), extra).await;
    (admin, pods, h)
}

impl AdminCluster {
    /// Names of the objects kamajid made that are still in the admin cluster, as `kind/ns/name`:
    /// what a destroy must leave empty.
    pub fn kamajid_objects(&self) -> Vec<String> {
        let k = self.kubectl();
        let mut out = Vec::new();
        for kind in [
            "namespaces",
            "secrets",
            "deployments",
            "services",
            "networkpolicies",
            "poddisruptionbudgets",
        ] {
            let list = k.json(&[kind, "-A", "-l", "app.kubernetes.io/managed-by=kamajid"]);
            for o in list["items"].as_array().into_iter().flatten() {
                out.push(format!(
                    "{kind}/{}/{}",
                    o["metadata"]["namespace"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                ));
            }
        }
        out
    }
}
