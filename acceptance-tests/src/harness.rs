//! [`Harness`]: a secured state etcd and a real `kamajid serve` on a random port, in a temp
//! directory with its PKI, and what the suites ask of them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kamaji_proto::v1::datastores_client::DatastoresClient;
use kamaji_proto::v1::tenant_clusters_client::TenantClustersClient;
use kamaji_testkit::devenv::write_file;
use kamajid::etcd::{connect, EtcdTls};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::*;

/// Starts `kamajid serve` with the harness files in `dir` and waits until it listens.
fn spawn_kamajid(
    dir: &Path,
    state_endpoint: &str,
    (port, metrics_port): (u16, u16),
    kubeconfig: Option<&Path>,
    extra: &[String],
) -> Child {
    let pki_dir = dir.join("pki");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("kamajid.log"))
        .expect("log");
    let mut cmd = Command::new(bin_dir().join("kamajid"));
    if let Some(k) = kubeconfig {
        cmd.arg("serve").arg("--kubeconfig").arg(k);
    } else {
        // No admin cluster: keep kamajid from finding one in the environment.
        cmd.arg("serve").env_remove("KUBECONFIG").env("HOME", dir);
    }
    let child = cmd
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--tls-cert-file")
        .arg(pki_dir.join("server.crt"))
        .arg("--tls-key-file")
        .arg(pki_dir.join("server.key"))
        .arg("--tokens-file")
        .arg(dir.join("tokens"))
        .arg("--kek-file")
        .arg(dir.join("kek"))
        .arg("--state-etcd-endpoints")
        .arg(state_endpoint)
        .arg("--state-etcd-ca-file")
        .arg(pki_dir.join("ca.crt"))
        .arg("--state-etcd-cert-file")
        .arg(pki_dir.join("root.crt"))
        .arg("--state-etcd-key-file")
        .arg(pki_dir.join("root.key"))
        .arg("--health-interval-seconds")
        .arg("2")
        .arg("--leader-lease-seconds")
        .arg("3")
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("starting kamajid");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "kamajid did not listen; see {}/kamajid.log",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// How [`Harness::start_from`] starts: what is not given is fresh.
#[derive(Default)]
pub struct Start {
    /// The admin cluster's kubeconfig (None: no admin cluster).
    pub kube: Option<String>,
    /// More `kamajid serve` flags.
    pub extra_args: Vec<String>,
    /// The PKI (its CA signs kamajid's serving certificate and the etcds').
    pub pki: Option<DevPki>,
    /// The key-encryption key, base64.
    pub kek: Option<String>,
    /// Records put in the state etcd before kamajid starts: key and value.
    pub records: Vec<(String, String)>,
    /// Where datastore etcds serve (None: loopback): the host's address when an admin node's
    /// pods must reach them. The generated PKI's serving certificate covers it.
    pub etcd_host: Option<std::net::IpAddr>,
}

/// A secured state etcd and a kamajid process serving on a random loopback port.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub pki: DevPki,
    pub endpoint: String,
    port: u16,
    /// kamajid's plain-HTTP probes and metrics, `http://127.0.0.1:<port>`.
    pub metrics: String,
    state: EtcdProcess,
    kamajid: Child,
    cli_config: PathBuf,
    extra_args: Vec<String>,
    /// Where [`Self::etcd`] serves its datastores.
    etcd_host: std::net::IpAddr,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.kamajid.kill();
        let _ = self.kamajid.wait();
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with_admin_cluster(None).await
    }

    /// Starts kamajid with `kube` as its admin-cluster kubeconfig (None: no admin cluster).
    pub async fn start_with_admin_cluster(kube: Option<String>) -> Self {
        Self::start_with_args(kube, Vec::new()).await
    }

    /// As [`Self::start_with_admin_cluster`], with extra `kamajid serve` flags.
    pub async fn start_with_args(kube: Option<String>, extra_args: Vec<String>) -> Self {
        Self::start_from(Start {
            kube,
            extra_args,
            ..Default::default()
        })
        .await
    }

    /// A harness as `start` says: its PKI, KEK and the records in its state etcd before
    /// kamajid first starts (as an upgraded kamajid finds them), else fresh ones.
    pub async fn start_from(start: Start) -> Self {
        ensure_built();
        kamajid::server::install_crypto();
        let dir = tempfile::tempdir().expect("tempdir");
        let etcd_host = start
            .etcd_host
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let pki = match start.pki {
            Some(p) => p,
            None => DevPki::generate_for(&[&etcd_host.to_string()]).expect("dev pki"),
        };
        let pki_dir = dir.path().join("pki");
        pki.write(&pki_dir).expect("write pki");
        write_file(&dir.path().join("tokens"), TOKEN, true).expect("tokens");
        let kek = start
            .kek
            .unwrap_or_else(kamaji_core::kek::Kek::generate_encoded);
        write_file(&dir.path().join("kek"), &kek, true).expect("kek");
        let state = EtcdProcess::start(dir.path(), "state", &pki, EtcdSecurity::state())
            .await
            .expect("state etcd");
        if !start.records.is_empty() {
            let tls = EtcdTls {
                ca_pem: Some(pki.ca.cert.clone()),
                identity: Some((pki.root.cert.clone(), pki.root.key.clone())),
            };
            let mut c = connect(
                std::slice::from_ref(&state.endpoint),
                &tls,
                Duration::from_secs(5),
            )
            .await
            .expect("state etcd client");
            for (k, v) in start.records {
                c.put(k, v, None).await.expect("loading a record");
            }
        }
        let (port, metrics_port) = (free_port(), free_port());
        let kubeconfig = start.kube.map(|k| {
            let path = dir.path().join("admin.kubeconfig");
            std::fs::write(&path, k).expect("kubeconfig");
            path
        });
        let kamajid = spawn_kamajid(
            dir.path(),
            &state.endpoint,
            (port, metrics_port),
            kubeconfig.as_deref(),
            &start.extra_args,
        );
        let cli_config = write_cli_config(dir.path());
        Self {
            endpoint: format!("https://127.0.0.1:{port}"),
            port,
            metrics: format!("http://127.0.0.1:{metrics_port}"),
            dir,
            pki,
            state,
            kamajid,
            cli_config,
            extra_args: start.extra_args,
            etcd_host,
        }
    }

    /// kamajid with the process runtime running tenants' components from `bins` (a
    /// `--k8s-bin-dir`) under `root/tenants`. `slot` (0 or 1) keeps the port ranges of tests
    /// running side by side apart. Returns the tenants' directory and the first port of the range.
    pub async fn with_process_runtime(root: &Path, bins: &Path, slot: u16) -> (Self, PathBuf, u16) {
        Self::with_process_runtime_args(root, bins, slot, Vec::new()).await
    }

    /// As [`Self::with_process_runtime`], with more `kamajid serve` flags. Slots 0 to 2 run side
    /// by side in one test binary.
    pub async fn with_process_runtime_args(
        root: &Path,
        bins: &Path,
        slot: u16,
        extra: Vec<String>,
    ) -> (Self, PathBuf, u16) {
        let tenants = root.join("tenants");
        // Below the ephemeral range (32768-60999): an outgoing connection must never take a
        // port a component is about to listen on.
        let base = 20000 + (std::process::id() % 40) as u16 * 300 + slot * 100;
        let mut args = vec![
            "--runtime=process".into(),
            format!("--k8s-bin-dir={}", bins.display()),
            format!("--process-dir={}", tenants.display()),
            format!("--process-port-range={base}-{}", base + 99),
        ];
        args.extend(extra);
        let h = Self::start_with_args(None, args).await;
        (h, tenants, base)
    }

    fn metrics_port(&self) -> u16 {
        self.metrics
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("metrics port")
    }

    /// The state etcd's metrics, `http://127.0.0.1:<port>/metrics`.
    pub fn state_metrics_url(&self) -> &str {
        &self.state.metrics_url
    }

    /// The kamajid process id, to read its memory.
    /// The last `lines` lines kamajid logged: what a failing assertion shows of why.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("kamajid.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn kamajid_pid(&self) -> u32 {
        self.kamajid.id()
    }

    /// Kills kamajid (SIGKILL: no graceful shutdown) and starts it again on the same port and
    /// state etcd, as a crash and a restart by the kubelet would.
    pub fn restart_kamajid(&mut self) {
        self.stop_kamajid();
        self.start_kamajid();
    }

    /// Kills kamajid (SIGKILL) and leaves it down: its port refuses connections.
    pub fn stop_kamajid(&mut self) {
        let _ = self.kamajid.kill();
        let _ = self.kamajid.wait();
    }

    /// Starts kamajid again after [`Self::stop_kamajid`], on the same port and state etcd.
    pub fn start_kamajid(&mut self) {
        let kubeconfig = self.dir.path().join("admin.kubeconfig");
        let kubeconfig = kubeconfig.exists().then_some(kubeconfig);
        self.kamajid = spawn_kamajid(
            self.dir.path(),
            &self.state.endpoint,
            (self.port, self.metrics_port()),
            kubeconfig.as_deref(),
            &self.extra_args,
        );
    }

    /// A datastore etcd sharing the harness PKI (its CA signs servers and clients).
    pub async fn etcd(&self, name: &str, security: EtcdSecurity) -> EtcdProcess {
        EtcdProcess::start_on(self.dir.path(), name, &self.pki, security, self.etcd_host)
            .await
            .expect("datastore etcd")
    }

    /// A root client on a datastore etcd started by [`Self::etcd`]: reads what tenants wrote.
    pub async fn shard_root(&self, endpoint: &str) -> etcd_client::Client {
        shard::root(&self.pki, endpoint).await
    }

    /// Users and roles other than root on a shard, and its number of keys: what a destroyed
    /// tenant must not leave behind.
    pub async fn shard_leftovers(&self, endpoint: &str) -> (Vec<String>, Vec<String>, i64) {
        shard::leftovers(&self.pki, endpoint).await
    }

    /// Every key on a shard, read as root.
    pub async fn shard_keys(&self, endpoint: &str) -> Vec<String> {
        shard::keys(&self.pki, endpoint).await
    }

    /// Registers `etcd` (which shares the harness PKI) as datastore `name`, schedulable, with
    /// `quota_bytes`, through the API.
    pub async fn register_datastore(&self, name: &str, etcd: &EtcdProcess, quota_bytes: i64) {
        self.client()
            .await
            .create_datastore(kamaji_proto::v1::CreateDatastoreRequest {
                name: name.into(),
                spec: Some(kamaji_proto::v1::DatastoreSpec {
                    endpoints: vec![etcd.endpoint.clone()],
                    ca_certificate: self.pki.ca.cert.clone(),
                    client_certificate: self.pki.root.cert.clone(),
                    client_key: self.pki.root.key.clone(),
                    client_ca_certificate: self.pki.ca.cert.clone(),
                    client_ca_key: self.pki.ca.key.clone(),
                    quota_bytes,
                    schedulable: true,
                    ..Default::default()
                }),
            })
            .await
            .unwrap_or_else(|e| panic!("registering datastore {name}: {e:?}"));
    }

    /// A gRPC client to kamajid, to check what it holds independently of Terraform.
    pub async fn client(&self) -> DatastoresClient<InterceptedService<Channel, Bearer>> {
        DatastoresClient::with_interceptor(self.channel().await, Bearer)
    }

    /// A gRPC client for tenant clusters.
    pub async fn tenants(&self) -> TenantClustersClient<InterceptedService<Channel, Bearer>> {
        TenantClustersClient::with_interceptor(self.channel().await, Bearer)
    }

    /// A TLS channel to kamajid's API (no token: add one per client).
    pub async fn channel(&self) -> Channel {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.pki.ca.cert));
        Channel::from_shared(self.endpoint.clone())
            .expect("uri")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("connect kamajid")
    }

    /// A raw root client on the state etcd.
    pub async fn state_etcd(&self) -> etcd_client::Client {
        let tls = EtcdTls {
            ca_pem: Some(self.pki.ca.cert.clone()),
            identity: Some((self.pki.root.cert.clone(), self.pki.root.key.clone())),
        };
        connect(
            std::slice::from_ref(&self.state.endpoint),
            &tls,
            Duration::from_secs(5),
        )
        .await
        .expect("state etcd client")
    }

    /// Names of the datastores kamajid holds.
    pub async fn datastore_names(&self) -> Vec<String> {
        let mut c = self.client().await;
        let list = c
            .list_datastores(kamaji_proto::v1::ListDatastoresRequest::default())
            .await
            .expect("list")
            .into_inner();
        let mut names: Vec<String> = list.datastores.into_iter().map(|d| d.name).collect();
        names.sort();
        names
    }

    /// A new Terraform root module with the harness PKI files in it (`ca.crt`, `ca.key`,
    /// `root.crt`, `root.key`) and the provider configured through the environment.
    pub fn workdir(&self, name: &str) -> Workdir {
        let dir = self.dir.path().join("tf").join(name);
        std::fs::create_dir_all(&dir).expect("workdir");
        self.pki.write(&dir).expect("pki files");
        Workdir {
            dir,
            env: vec![
                (
                    "TF_CLI_CONFIG_FILE".into(),
                    self.cli_config.display().to_string(),
                ),
                ("KAMAJI_ENDPOINT".into(), self.endpoint.clone()),
                ("KAMAJI_TOKEN".into(), TOKEN.into()),
                (
                    "KAMAJI_CA_CERTIFICATE_FILE".into(),
                    self.dir.path().join("pki/ca.crt").display().to_string(),
                ),
                ("TF_IN_AUTOMATION".into(), "1".into()),
                ("CHECKPOINT_DISABLE".into(), "1".into()),
            ],
        }
    }
}
