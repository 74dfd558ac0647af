//! End-to-end harness: real etcd processes, a real `kamajid serve` process, and the real
//! `terraform` CLI using the freshly built provider through `dev_overrides`.
//!
//! Each [`Harness`] owns a temp directory with its PKI, a secured state etcd and a kamajid on a
//! random port; each [`Workdir`] is a Terraform root module with its own state. Tests check both
//! what Terraform says (plan JSON, state JSON, diagnostics) and what kamajid holds.

pub mod admin_cluster;
pub mod chart;
pub mod k8s;
pub mod node;
pub mod oidc;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub use kamaji_core::pki::{issue, new_ca, Pem};
use kamaji_proto::v1::datastores_client::DatastoresClient;
use kamaji_proto::v1::tenant_clusters_client::TenantClustersClient;
use kamaji_testkit::devenv::write_file;
pub use kamaji_testkit::devenv::{free_port, DevPki, EtcdProcess, EtcdSecurity};
pub use kamaji_testkit::kube_double;
use kamajid::etcd::{connect, EtcdTls};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

pub const TOKEN: &str = "acceptance-token-0123456789abcdef";

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// `release` when `KAMAJI_BUILD_PROFILE=release` (benchmarks), else `debug` (tests).
fn release() -> bool {
    std::env::var("KAMAJI_BUILD_PROFILE").is_ok_and(|p| p == "release")
}

/// Where cargo puts the binaries under test.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join(if release() { "release" } else { "debug" })
}

/// Builds kamajid and the provider once per test binary, so tests never run stale binaries.
pub fn ensure_built() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // cargo test sets CARGO_PKG_* and friends for the test; build scripts that watch them
        // would rebuild under the outer cargo's feet.
        for (k, _) in std::env::vars() {
            if k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_TARGET_DIR" {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(workspace())
            // The same selection as `make build`, so features unify alike and nothing rebuilds.
            .args(["build", "--quiet", "--workspace", "--bins"]);
        if release() {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "building kamajid and the provider failed");
    });
}

/// Adds the harness token to every call.
#[derive(Clone, Copy)]
pub struct Bearer;

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let auth = format!("Bearer {TOKEN}")
            .parse()
            .map_err(|_| tonic::Status::internal("token"))?;
        req.metadata_mut().insert("authorization", auth);
        Ok(req)
    }
}

/// Writes a terraform CLI config that installs the freshly built provider via dev_overrides.
pub fn write_cli_config(dir: &Path) -> PathBuf {
    let path = dir.join("terraformrc");
    let rc = format!(
        "provider_installation {{\n  dev_overrides {{\n    \"kamaji/kamaji\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
        bin_dir().display()
    );
    std::fs::write(&path, rc).expect("terraformrc");
    path
}

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

    /// The kamajid process id, to read its memory.
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

/// The CLI the suites drive: `terraform` on PATH, or OpenTofu when `KAMAJI_TF_CLI=tofu` (built
/// once per machine by `scripts/tofu.sh` at the version in `tools/tofu-build/VERSION`). Any other
/// value is the path of a CLI to use. `make test` runs the suites under both.
pub fn cli() -> PathBuf {
    static CLI: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CLI.get_or_init(|| match std::env::var("KAMAJI_TF_CLI").as_deref() {
        Err(_) | Ok("") | Ok("terraform") => PathBuf::from("terraform"),
        Ok("tofu") => tofu(),
        Ok(path) => PathBuf::from(path),
    })
    .clone()
}

/// OpenTofu, built once per machine by `scripts/tofu.sh`.
pub fn tofu() -> PathBuf {
    let out = Command::new(workspace().join("scripts/tofu.sh"))
        .output()
        .expect("running scripts/tofu.sh");
    assert!(
        out.status.success(),
        "OpenTofu is not available:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Whether the CLI printed a plan of changes (terraform and tofu word it differently).
pub fn planned_changes(out: &str) -> bool {
    out.contains("Terraform will perform") || out.contains("OpenTofu will perform")
}

/// The outcome of one terraform command.
#[derive(Debug)]
pub struct Tf {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Tf {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Tf {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A Terraform root module.
pub struct Workdir {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Workdir {
    pub fn write(&self, main_tf: &str) {
        std::fs::write(self.dir.join("main.tf"), main_tf).expect("main.tf");
    }

    pub fn write_file(&self, name: &str, content: &str) {
        std::fs::write(self.dir.join(name), content).expect("file");
    }

    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.into(), v.into()));
        }
    }

    pub fn tf(&self, args: &[&str]) -> Tf {
        self.run(&cli(), args)
    }

    /// As [`Self::tf`], with the CLI at `program` (terraform or tofu, whatever KAMAJI_TF_CLI says).
    pub fn run(&self, program: &Path, args: &[&str]) -> Tf {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.dir).args(args).arg("-no-color");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env_remove("KAMAJI_TOKEN_FILE")
            .env_remove("KAMAJI_CA_CERTIFICATE");
        cmd.output().expect("running terraform").into()
    }

    pub fn apply(&self) -> Tf {
        self.tf(&["apply", "-auto-approve", "-input=false"])
    }

    /// Applies and fails the test with terraform's output when it does not succeed.
    pub fn must_apply(&self) {
        let r = self.apply();
        assert!(r.ok(), "terraform apply failed:\n{}", r.output());
    }

    /// `terraform plan -detailed-exitcode`: 0 no changes, 1 error, 2 changes.
    pub fn plan_code(&self) -> Tf {
        self.tf(&["plan", "-detailed-exitcode", "-input=false"])
    }

    /// The plan as JSON (`terraform show -json` of a saved plan).
    pub fn plan_json(&self) -> serde_json::Value {
        let r = self.tf(&["plan", "-input=false", "-out=tfplan"]);
        assert!(r.ok(), "terraform plan failed:\n{}", r.output());
        let show = self.tf(&["show", "-json", "tfplan"]);
        serde_json::from_str(&show.stdout).expect("plan json")
    }

    /// The state as JSON.
    pub fn state_json(&self) -> serde_json::Value {
        let show = self.tf(&["show", "-json"]);
        assert!(show.ok(), "terraform show failed:\n{}", show.output());
        serde_json::from_str(&show.stdout).expect("state json")
    }

    /// The values of resource `address` in state.
    pub fn resource(&self, address: &str) -> serde_json::Value {
        let state = self.state_json();
        find_resource(&state["values"]["root_module"], address)
            .unwrap_or_else(|| panic!("{address} is not in state:\n{state:#}"))
    }
}

fn find_resource(module: &serde_json::Value, address: &str) -> Option<serde_json::Value> {
    module["resources"]
        .as_array()?
        .iter()
        .find(|r| r["address"] == address)
        .cloned()
}

/// The planned actions per resource address, e.g. `{"kamaji_datastore.a": ["update"]}`.
pub fn planned_actions(
    plan: &serde_json::Value,
) -> std::collections::BTreeMap<String, Vec<String>> {
    plan["resource_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|rc| {
            let actions = rc["change"]["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect();
            (
                rc["address"].as_str().unwrap_or_default().to_owned(),
                actions,
            )
        })
        .collect()
}

/// A certificate for `cn`, signed by `ca`, that expired yesterday.
pub fn expired(ca: &Pem, cn: &str) -> Pem {
    use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, KeyPair::from_pem(&ca.key).expect("ca key"))
        .expect("issuer");
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(30);
    p.not_after = now - time::Duration::days(1);
    Pem {
        cert: p.signed_by(&key, &issuer).expect("sign").pem(),
        key: key.serialize_pem(),
    }
}

/// HCL of one `kamaji_datastore` whose PEM attributes read the workdir's files by default.
pub struct DatastoreHcl {
    pub label: String,
    pub name: String,
    pub endpoints: Vec<String>,
    pub ca_certificate: String,
    pub client_certificate: String,
    pub client_key: String,
    pub client_ca_certificate: String,
    pub client_ca_key: String,
    /// Extra attribute lines.
    pub extra: String,
}

impl DatastoreHcl {
    pub fn new(label: &str, name: &str, endpoint: &str) -> Self {
        Self {
            label: label.into(),
            name: format!("{name:?}"),
            endpoints: vec![endpoint.into()],
            ca_certificate: "file(\"ca.crt\")".into(),
            client_certificate: "file(\"root.crt\")".into(),
            client_key: "file(\"root.key\")".into(),
            client_ca_certificate: "file(\"ca.crt\")".into(),
            client_ca_key: "file(\"ca.key\")".into(),
            extra: String::new(),
        }
    }

    pub fn render(&self) -> String {
        let eps = self
            .endpoints
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "resource \"kamaji_datastore\" \"{}\" {{\n  name = {}\n  endpoints = [{eps}]\n  ca_certificate = {}\n  client_certificate = {}\n  client_key = {}\n  client_ca_certificate = {}\n  client_ca_key = {}\n{}\n}}\n",
            self.label, self.name, self.ca_certificate, self.client_certificate, self.client_key, self.client_ca_certificate, self.client_ca_key, self.extra
        )
    }
}

/// Whether a diagnostic in terraform's output points at `attribute`: terraform quotes the
/// source line of the attribute the provider named (`  8:   name = "Bad"`).
pub fn points_at(out: &str, attribute: &str) -> bool {
    out.contains("Error: ")
        && out.lines().any(|l| {
            l.trim_start().split_once(':').is_some_and(|(n, rest)| {
                !n.is_empty()
                    && n.chars().all(|c| c.is_ascii_digit())
                    && rest.trim_start().starts_with(&format!("{attribute} "))
            })
        })
}

pub const PROVIDER_HCL: &str =
    "terraform {\n  required_providers {\n    kamaji = { source = \"kamaji/kamaji\" }\n  }\n}\n";

/// `GET url` over plain HTTP/1.1 with `accept` as its Accept header: the status, the content
/// type and the body.
pub fn http_get(url: &str, accept: Option<&str>) -> (u16, String, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{accept}Connection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    let ty = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, ty, body.to_owned())
}

/// Runs `openssl ARGS` with `input` on stdin and returns what it prints: an independent reading
/// of certificates and keys.
pub fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl is installed by scripts/install-deps.sh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("writing to openssl");
    let out = child.wait_with_output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

/// Writes `content` to `path` with mode 0600 (kubeconfigs, keys).
pub fn write_private(path: &Path, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).expect("writing a private file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 0600");
}

/// `(file, pid)` of every PID file of the process runtime's tenant directories under `dir`.
pub fn pids_under(dir: &Path) -> Vec<(PathBuf, u32)> {
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

/// Kills whatever the tenants' PID files under its directory name when dropped, even when a
/// test fails: the process runtime's tenant processes outlive kamajid by design.
pub struct Reaper(pub PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for (_, pid) in pids_under(&self.0) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// What a datastore etcd holds, read as its root user: what tenants wrote and left.
pub mod shard {
    use std::time::Duration;

    use kamajid::etcd::{connect, EtcdTls};

    use crate::DevPki;

    /// A root client on a datastore etcd whose CA and root certificate are `pki`'s.
    pub async fn root(pki: &DevPki, endpoint: &str) -> etcd_client::Client {
        let tls = EtcdTls {
            ca_pem: Some(pki.ca.cert.clone()),
            identity: Some((pki.root.cert.clone(), pki.root.key.clone())),
        };
        connect(&[endpoint.to_owned()], &tls, Duration::from_secs(5))
            .await
            .expect("shard client")
    }

    /// Users and roles other than root on a shard, and its number of keys: what a destroyed
    /// tenant must not leave behind.
    pub async fn leftovers(pki: &DevPki, endpoint: &str) -> (Vec<String>, Vec<String>, i64) {
        let mut c = root(pki, endpoint).await;
        let users: Vec<String> = c
            .user_list()
            .await
            .expect("users")
            .users()
            .iter()
            .filter(|u| u.as_str() != "root")
            .cloned()
            .collect();
        let roles: Vec<String> = c
            .role_list()
            .await
            .expect("roles")
            .roles()
            .iter()
            .filter(|r| r.as_str() != "root")
            .cloned()
            .collect();
        let keys = c
            .get(
                "",
                Some(
                    etcd_client::GetOptions::new()
                        .with_from_key()
                        .with_count_only(),
                ),
            )
            .await
            .expect("count keys")
            .count();
        (users, roles, keys)
    }

    /// Every key on a shard, read as root.
    pub async fn keys(pki: &DevPki, endpoint: &str) -> Vec<String> {
        let mut c = root(pki, endpoint).await;
        let r = c
            .get(
                "",
                Some(
                    etcd_client::GetOptions::new()
                        .with_from_key()
                        .with_keys_only(),
                ),
            )
            .await
            .expect("list keys");
        r.kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect()
    }
}
