//! A real admin cluster: kube-apiserver, kube-controller-manager with every controller (the
//! newest version tests run) on their own etcd, for kamajid's Kubernetes runtime. The apiserver is
//! the real judge of what kamajid applies (schemas, immutable fields, field ownership,
//! conflicts); its namespace controller decides when a deleted tenant's namespace is really gone.
//!
//! [`AdminCluster::with_node`] adds what runs pods: kube-scheduler and a [`Node`] (containerd,
//! kubelet, kube-proxy, CoreDNS) on this machine, so tenant control planes run as real pods of
//! the images built here, rolled by the real Deployment controller. [`LoadBalancers`] stands in
//! for the one part no program here plays: a cloud's load-balancer controller.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kamaji_core::ids::TenantId;
use kamaji_core::pki::{kubeconfig, mint, TenantPkiSpec};

use crate::k8s::{self, Kubectl};
use crate::node::{self, Join, Node};
use crate::{free_port, write_private, DevPki, EtcdProcess, EtcdSecurity};

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

/// Starts `bin` with `args`, its output to `log`.
pub(crate) fn spawn(bin: &Path, args: &[String], log: &Path) -> Child {
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
        // With a node, everything lives under the node's directory: whatever a killed test
        // leaves running there, the next node start stops.
        let claim = with_node.then(node::claim);
        let tmp = match claim {
            Some(_) => tempfile::tempdir_in(node::NODE_DIR),
            None => tempfile::tempdir(),
        }
        .expect("tempdir");
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
                service_cidr: "10.0.0.0/24".parse().expect("a network"),
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
                // The node's name is no DNS name here: reach its kubelet at its address.
                "--kubelet-preferred-address-types=InternalIP".into(),
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
            "--controllers=*".into(),
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
                Node::start(
                    claim.expect("claimed above"),
                    &Join {
                        server: &server,
                        ca: &pki.ca,
                        admin: &pki.admin,
                    },
                )
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

/// Plays a cloud's load-balancer controller, the one part of a production admin cluster this
/// machine has no program for: gives each `LoadBalancer` Service an address of its own from
/// 198.51.100.0/24 (a documentation range no network routes), as MetalLB or a cloud would. The
/// traffic is real: kube-proxy programs the address, forwards it to the Service's pods and
/// enforces `loadBalancerSourceRanges` (for clients on this host and pods alike, since it
/// rewrites the destination before any routing). Stops when dropped.
pub struct LoadBalancers {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LoadBalancers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl LoadBalancers {
    pub fn start(admin: &AdminCluster) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let kubectl = admin.kubectl();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                assign_addresses(&kubectl);
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

fn assign_addresses(kubectl: &Kubectl) {
    let list = kubectl.run(&["get", "services", "-A", "-o", "json"]);
    let Ok(list) = serde_json::from_str::<serde_json::Value>(&list.stdout) else {
        return;
    };
    let services: Vec<serde_json::Value> = list["items"].as_array().cloned().unwrap_or_default();
    let ingress_ip = |s: &serde_json::Value| {
        s["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_owned)
    };
    let mut used: Vec<String> = services.iter().filter_map(ingress_ip).collect();
    for s in &services {
        if s["spec"]["type"] != "LoadBalancer" || ingress_ip(s).is_some() {
            continue;
        }
        let Some(ip) = (10..=250)
            .map(|i| format!("198.51.100.{i}"))
            .find(|ip| !used.contains(ip))
        else {
            return;
        };
        let status = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}});
        let r = kubectl.run(&[
            "patch",
            "service",
            s["metadata"]["name"].as_str().unwrap_or_default(),
            "-n",
            s["metadata"]["namespace"].as_str().unwrap_or_default(),
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
        if r.ok {
            used.push(ip);
        }
    }
}

/// A kamajid on this host whose admin cluster runs its tenants' pods on a real node, with
/// [`LoadBalancers`] addressing their `LoadBalancer` Services and the harness's datastores
/// serving on the host's address (where the pods reach them); `extra` are more `kamajid serve`
/// flags.
pub async fn harness(extra: Vec<String>) -> (AdminCluster, LoadBalancers, crate::Harness) {
    let admin = AdminCluster::with_node().await;
    let lbs = LoadBalancers::start(&admin);
    let h = crate::Harness::start_from(crate::Start {
        kube: Some(admin.kubeconfig.clone()),
        extra_args: extra,
        etcd_host: Some(node::host_ip()),
        ..Default::default()
    })
    .await;
    (admin, lbs, h)
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
