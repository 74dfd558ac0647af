//! A real admin-cluster node on this machine: containerd (Debian's, with runc and the Debian CNI
//! plugins bridge, host-local, portmap and loopback), the kubelet and kube-proxy of the newest
//! version tests run, and CoreDNS as a pod. Images cannot be pulled here: `scripts/images.sh`
//! builds them from the binaries this machine has and imports them under the names pods ask for.
//!
//! Only one node runs on a machine at a time (kube-proxy's iptables chains, the bridge and the
//! kubelet's cgroups are machine-wide): [`Node::start`] takes a machine-wide lock, and cleans up
//! what a node that was killed left behind before it starts.
//!
//! What a node needs from the machine: root, cgroup v1 or v2 mounted read-write (these machines
//! run cgroup v1, which kubelets from 1.35 refuse unless told `failCgroupV1: false`), iptables,
//! `br_netfilter`'s sysctls, and the Debian packages `scripts/install-deps.sh` installs.

use crate::admin_cluster::spawn;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kamaji_core::pki::{kubeconfig, sign, Leaf, Pem, Usage};

use crate::k8s::{self, Kubectl};
use crate::workspace;

/// Where the node keeps its state: a fixed place, so the next start finds what a killed node
/// left (mounts, containers, the bridge) and removes it. Short: containerd's socket path is
/// limited to 108 bytes.
pub const NODE_DIR: &str = "/tmp/kamaji-node";
/// The machine-wide lock a running node holds.
const LOCK: &str = "/tmp/kamaji-node.lock";
/// The node's name in the admin cluster.
pub const NODE_NAME: &str = "kamaji-admin";
/// The bridge pods attach to, and their addresses.
const BRIDGE: &str = "kamaji0";
/// The CNI network's name (its rules carry it).
const CNI_NETWORK: &str = "kamaji";
pub const POD_CIDR: &str = "10.88.0.0/24";
/// The admin cluster's Service range; its DNS Service takes [`DNS_IP`].
pub const SERVICE_CIDR: &str = "10.0.0.0/24";
pub const DNS_IP: &str = "10.0.0.10";

mod machine;
use machine::set_sysctl;
pub use machine::*;

/// This machine's address on its default route: where pods reach the host's services (the admin
/// apiserver, the datastores' etcds) and where NodePorts answer.
pub fn host_ip() -> IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
    // No packet is sent: connecting a UDP socket only picks the route and source address.
    s.connect("192.0.2.255:9")
        .or_else(|_| s.connect("203.0.113.1:9"))
        .expect("a default route");
    let ip = s.local_addr().expect("local address").ip();
    assert!(
        !ip.is_loopback() && !ip.is_unspecified(),
        "no address on a default route"
    );
    ip
}

/// What the node joins: the admin apiserver as pods reach it, its CA (and key, to sign the
/// kubelet's and kube-proxy's client certificates) and a cluster-admin identity for the
/// apiserver's calls to the kubelet.
pub struct Join<'a> {
    pub server: &'a str,
    pub ca: &'a Pem,
    pub admin: &'a Pem,
}

/// A running node; stopped and cleaned up when dropped.
pub struct Node {
    pub dir: PathBuf,
    pub socket: PathBuf,
    procs: Vec<(&'static str, Child)>,
    kubelet_args: Vec<String>,
    /// The machine-wide lock, released last.
    _lock: std::fs::File,
}

impl Drop for Node {
    fn drop(&mut self) {
        for (_, p) in self.procs.iter_mut().rev() {
            let _ = p.kill();
            let _ = p.wait();
        }
        if std::thread::panicking() {
            keep_logs(&self.dir);
        }
        cleanup(&self.dir);
    }
}

/// Copies the node's logs (its programs', the pods') where a failed test names them.
fn keep_logs(dir: &Path) {
    let to = PathBuf::from(format!("/tmp/kamaji-node-logs-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&to);
    let _ = Command::new("cp")
        .arg("-r")
        .args(
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "log")),
        )
        .arg(dir.join("kubelet/pod-logs"))
        .arg(&to)
        .status();
    eprintln!("node: logs kept in {}", to.display());
}

fn write(path: &Path, content: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("node directory");
    }
    crate::write_private(path, content);
}

impl Node {
    /// Starts a node that joins the admin cluster `join` describes, with every image imported,
    /// and waits until it is Ready and CoreDNS answers.
    pub async fn start(claim: Claim, join: &Join<'_>) -> Self {
        let lock = claim.lock;
        let dir = PathBuf::from(NODE_DIR);
        // Pods reach Services and each other through the host: forwarding on, and bridged
        // traffic through iptables (kube-proxy's rules).
        set_sysctl("net/ipv4/ip_forward", "1");
        set_sysctl("net/bridge/bridge-nf-call-iptables", "1");
        let ip = host_ip();
        let mut node = Node {
            socket: dir.join("containerd/containerd.sock"),
            dir: dir.clone(),
            procs: Vec::new(),
            kubelet_args: Vec::new(),
            _lock: lock,
        };
        node.start_containerd().await;
        node.import_images();
        node.write_cni();
        node.start_kubelet(join, ip);
        node.start_kube_proxy(join, ip);
        let admin = Kubectl::new(
            &dir.join("admin.kubeconfig"),
            &kubeconfig(
                "admin",
                join.server,
                &join.ca.cert,
                "kubernetes-admin",
                join.admin,
            ),
        );
        node.await_ready(&admin).await;
        node.start_coredns(&admin).await;
        node
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    async fn start_containerd(&mut self) {
        let d = self.dir.join("containerd");
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10.2"
  # The kubelet gives every sandbox oom_score_adj -998 (and critical and Guaranteed pods scores
  # below 0); lowering a score needs CAP_SYS_RESOURCE, which the container these machines run in
  # lacks. Scores are raised to containerd's own instead, as for rootless containerd.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{dir}/cni"
"#,
            d = d.display(),
            dir = self.dir.display()
        );
        write(&d.join("config.toml"), &config);
        let child = spawn(
            Path::new("containerd"),
            &[
                "--config".into(),
                d.join("config.toml").display().to_string(),
            ],
            &self.log("containerd"),
        );
        self.procs.push(("containerd", child));
        let start = Instant::now();
        while !self.socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "containerd did not start; see {}",
                self.log("containerd").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every image pods here ask for, built from this machine's binaries when missing.
    fn import_images(&self) {
        let out = Command::new(workspace().join("scripts/images.sh"))
            .arg("import")
            .arg(&self.socket)
            .output()
            .expect("running scripts/images.sh");
        assert!(
            out.status.success(),
            "building or importing the images failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn write_cni(&self) {
        let conf = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": true,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": self.dir.join("cni-ipam").display().to_string(),
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "loopback"}
            ]
        });
        write(
            &self.dir.join("cni/10-kamaji.conflist"),
            &serde_json::to_string_pretty(&conf).expect("json"),
        );
    }

    /// A client certificate of the admin cluster's CA for `cn` in `orgs`.
    fn client_cert(join: &Join<'_>, cn: &str, orgs: &[&str]) -> Pem {
        sign(
            join.ca,
            &Leaf {
                cn,
                orgs,
                sans: &[],
                usage: Usage::Client,
            },
        )
        .expect("a client certificate")
    }

    fn start_kubelet(&mut self, join: &Join<'_>, ip: IpAddr) {
        let d = self.dir.join("kubelet");
        let user = format!("system:node:{NODE_NAME}");
        let creds = Self::client_cert(join, &user, &["system:nodes"]);
        write(
            &d.join("kubeconfig"),
            &kubeconfig("admin", join.server, &join.ca.cert, &user, &creds),
        );
        write(&d.join("ca.crt"), &join.ca.cert);
        let config = serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",
            // These machines run cgroup v1, which kubelets from 1.35 refuse by default.
            "failCgroupV1": false,
            "containerRuntimeEndpoint": format!("unix://{}", self.socket.display()),
            "authentication": {
                "anonymous": {"enabled": false},
                "webhook": {"enabled": true},
                "x509": {"clientCAFile": d.join("ca.crt").display().to_string()},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDNS": [DNS_IP],
            "clusterDomain": "cluster.local",
            "failSwapOn": false,
            "readOnlyPort": 0,
            "podCIDR": POD_CIDR,
            "podLogsDir": d.join("pod-logs").display().to_string(),
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": false,
            // A shared test machine: evict on memory only when it is really short, never for the
            // disk the other tests fill.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
            "staticPodPath": "",
        });
        write(
            &d.join("config.yaml"),
            &serde_json::to_string_pretty(&config).expect("json"),
        );
        let args = vec![
            format!("--config={}", d.join("config.yaml").display()),
            format!("--kubeconfig={}", d.join("kubeconfig").display()),
            format!("--root-dir={}", d.join("root").display()),
            format!("--cert-dir={}", d.join("certs").display()),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={ip}"),
        ];
        self.kubelet_args = args;
        self.spawn_kubelet();
    }

    fn spawn_kubelet(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log("kubelet"))
            .expect("kubelet log");
        let err = log.try_clone().expect("kubelet log");
        let child = Command::new(k8s::program(&k8s::newest(), "kubelet"))
            .args(&self.kubelet_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("starting the kubelet");
        self.procs.push(("kubelet", child));
    }

    /// Kills the kubelet (SIGKILL: no graceful shutdown, the pods' containers keep running) and
    /// starts it again, as a crashed or upgraded kubelet comes back on a node nobody drained.
    pub fn restart_kubelet(&mut self) {
        if let Some(i) = self.procs.iter().position(|(n, _)| *n == "kubelet") {
            let (_, mut p) = self.procs.remove(i);
            let _ = p.kill();
            let _ = p.wait();
        }
        self.spawn_kubelet();
    }

    fn start_kube_proxy(&mut self, join: &Join<'_>, ip: IpAddr) {
        let d = self.dir.join("kube-proxy");
        let creds = Self::client_cert(join, "system:kube-proxy", &[]);
        write(
            &d.join("kubeconfig"),
            &kubeconfig(
                "admin",
                join.server,
                &join.ca.cert,
                "system:kube-proxy",
                &creds,
            ),
        );
        let config = serde_json::json!({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": d.join("kubeconfig").display().to_string()},
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "bindAddress": ip.to_string(),
            "healthzBindAddress": format!("127.0.0.1:{}", crate::free_port()),
            "metricsBindAddress": format!("127.0.0.1:{}", crate::free_port()),
            // Inside a container the conntrack sysctls are read-only: leave them as they are.
            "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        });
        write(
            &d.join("config.yaml"),
            &serde_json::to_string_pretty(&config).expect("json"),
        );
        let child = spawn(
            &k8s::program(&k8s::newest(), "kube-proxy"),
            &[format!("--config={}", d.join("config.yaml").display())],
            &self.log("kube-proxy"),
        );
        self.procs.push(("kube-proxy", child));
    }

    /// Checks the node's programs still run.
    fn check_running(&mut self) {
        for (name, p) in &mut self.procs {
            if let Ok(Some(status)) = p.try_wait() {
                // The node's directory goes with the node: its last words go with the panic.
                let log =
                    std::fs::read_to_string(format!("{NODE_DIR}/{name}.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "{name} exited ({status}); the end of {NODE_DIR}/{name}.log:\n{}",
                    tail.join("\n")
                );
            }
        }
    }

    async fn await_ready(&mut self, admin: &Kubectl) {
        let start = Instant::now();
        loop {
            self.check_running();
            let r = admin.run(&[
                "get",
                "node",
                NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            if r.ok && r.stdout.trim() == "True" {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the node did not become Ready: {}{}; see {}",
                r.stdout,
                r.stderr,
                self.log("kubelet").display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// CoreDNS, as kubeadm installs it, on port 1053 (a non-root process binds no port below
    /// 1024) behind the DNS Service on 53.
    async fn start_coredns(&mut self, admin: &Kubectl) {
        let version = include_str!("../../../tools/upstream/PROGRAMS")
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&"coredns")).then(|| f[2].to_owned())
            })
            .expect("coredns in tools/upstream/PROGRAMS");
        admin.apply(
            &COREDNS
                .replace("@VERSION@", &version)
                .replace("@DNS_IP@", DNS_IP),
        );
        let start = Instant::now();
        loop {
            self.check_running();
            let r = admin.run(&[
                "get",
                "deployment",
                "coredns",
                "-n",
                "kube-system",
                "-o",
                "jsonpath={.status.availableReplicas}",
            ]);
            if r.stdout.trim() == "1" {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "CoreDNS did not become available: {}",
                admin.run(&["describe", "pods", "-n", "kube-system"]).stdout
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// CoreDNS as the admin cluster runs it (the image `scripts/images.sh` builds).
const COREDNS: &str = include_str!("coredns.yaml");
