//! A local, secured development environment: a dev PKI and etcd processes started with TLS,
//! client-certificate auth and auth enabled, exactly as kamajid requires of real datastores.
//!
//! `kamajid dev` uses it for `make demo`; the test suites use it to run against real etcd.
//! Variants with client-certificate auth or auth switched off exist so tests can check that
//! kamajid refuses them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::pki::{issue, new_ca, Pem, PkiError};
use etcd_client::{Client, UserAddOptions};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::info;

use crate::config::{DevConfig, ServeConfig, StateEtcdConfig};
use crate::etcd::{connect, error_chain, EtcdTls};
use crate::kek::Kek;

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("generating dev certificates: {0}")]
    Pki(#[from] crate::pki::PkiError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting etcd (is it installed? `apt-get install etcd-server etcd-client`): {0}")]
    Spawn(std::io::Error),
    #[error("etcd {name} did not become ready within {secs}s: {detail} (log: {log})")]
    NotReady {
        name: String,
        secs: u64,
        detail: String,
        log: PathBuf,
    },
    #[error("enabling auth on etcd {name}: {detail}")]
    Auth { name: String, detail: String },
    #[error(transparent)]
    Serve(#[from] crate::server::ServeError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DevError {
    let path = path.to_owned();
    move |source| DevError::Io { what, path, source }
}

/// The dev PKI: one CA that signs servers and clients, as a small etcd deployment often has.
#[derive(Clone)]
pub struct DevPki {
    pub ca: Pem,
    /// Serving certificate for 127.0.0.1 and localhost (etcd servers and kamajid).
    pub server: Pem,
    /// Client certificate with CN=root: etcd's root user.
    pub root: Pem,
}

impl DevPki {
    pub fn generate() -> Result<Self, PkiError> {
        let ca = new_ca("kamaji dev CA")?;
        let server = issue(&ca, "kamaji-dev-server", &["localhost", "127.0.0.1"])?;
        let root = issue(&ca, "root", &[])?;
        Ok(Self { ca, server, root })
    }

    /// Writes ca.crt/ca.key, server.crt/.key and root.crt/.key into `dir` (keys 0600).
    pub fn write(&self, dir: &Path) -> Result<(), DevError> {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        for (name, pem) in [
            ("ca", &self.ca),
            ("server", &self.server),
            ("root", &self.root),
        ] {
            write_file(&dir.join(format!("{name}.crt")), &pem.cert, false)?;
            write_file(&dir.join(format!("{name}.key")), &pem.key, true)?;
        }
        Ok(())
    }
}

pub fn write_file(path: &Path, content: &str, private: bool) -> Result<(), DevError> {
    std::fs::write(path, content).map_err(io("writing", path))?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("chmod", path))?;
    }
    Ok(())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// How an etcd is secured. The default is what kamajid requires of a datastore.
#[derive(Debug, Clone, Copy)]
pub struct EtcdSecurity {
    pub client_cert_auth: bool,
    pub auth: bool,
}

impl Default for EtcdSecurity {
    fn default() -> Self {
        Self {
            client_cert_auth: true,
            auth: true,
        }
    }
}

/// An etcd process on loopback; killed when dropped.
pub struct EtcdProcess {
    pub name: String,
    /// https://127.0.0.1:<port>
    pub endpoint: String,
    pub data_dir: PathBuf,
    child: Child,
}

impl EtcdProcess {
    /// Starts etcd under `dir/<name>` serving with `pki.server`, trusting `pki.ca` for clients,
    /// and waits until it answers. With `security.auth`, creates a password-less root user
    /// (authenticated by the CN=root certificate) and enables auth.
    pub async fn start(
        dir: &Path,
        name: &str,
        pki: &DevPki,
        security: EtcdSecurity,
    ) -> Result<Self, DevError> {
        let base = dir.join(name);
        let pki_dir = base.join("pki");
        pki.write(&pki_dir)?;
        let data_dir = base.join("data");
        let log = base.join("etcd.log");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("https://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log_file = std::fs::File::create(&log).map_err(io("creating", &log))?;
        let log_err = log_file.try_clone().map_err(io("opening", &log))?;
        let mut cmd = Command::new(std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into()));
        cmd.arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen-client-urls")
            .arg(&endpoint)
            .arg("--advertise-client-urls")
            .arg(&endpoint)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("{name}={peer_url}"))
            .arg("--cert-file")
            .arg(pki_dir.join("server.crt"))
            .arg("--key-file")
            .arg(pki_dir.join("server.key"))
            .arg("--logger")
            .arg("zap")
            .arg("--log-level")
            .arg("warn");
        if security.client_cert_auth {
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(pki_dir.join("ca.crt"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(DevError::Spawn)?;
        let proc = Self {
            name: name.to_owned(),
            endpoint,
            data_dir,
            child,
        };

        let tls = EtcdTls {
            ca_pem: Some(pki.ca.cert.clone()),
            identity: Some((pki.root.cert.clone(), pki.root.key.clone())),
        };
        let client = proc.wait_ready(&tls, &log).await?;
        if security.auth {
            enable_auth(client, name).await?;
        }
        Ok(proc)
    }

    async fn wait_ready(&self, tls: &EtcdTls, log: &Path) -> Result<Client, DevError> {
        let limit = Duration::from_secs(30);
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            match connect(
                std::slice::from_ref(&self.endpoint),
                tls,
                Duration::from_secs(2),
            )
            .await
            {
                Ok(mut c) => match c.status().await {
                    Ok(_) => return Ok(c),
                    Err(e) => last = error_chain(&e),
                },
                Err(e) => last = error_chain(&e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(DevError::NotReady {
            name: self.name.clone(),
            secs: limit.as_secs(),
            detail: last,
            log: log.to_owned(),
        })
    }

    /// Stops the process and waits for it, e.g. to test what happens when a datastore dies.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

async fn enable_auth(mut client: Client, name: &str) -> Result<(), DevError> {
    let err = |e: etcd_client::Error| DevError::Auth {
        name: name.to_owned(),
        detail: error_chain(&e),
    };
    if let Err(e) = client
        .user_add("root", "", Some(UserAddOptions::new().with_no_pwd()))
        .await
    {
        if !error_chain(&e).contains("already exists") {
            return Err(err(e));
        }
    }
    client.user_grant_role("root", "root").await.map_err(err)?;
    client.auth_enable().await.map_err(err)?;
    Ok(())
}

/// `kamajid dev`: a fresh local environment (state etcd, N datastores, kamajid) until
/// interrupted. Writes into `dir`: `pki/` (CA, server and root certificates), `token`, `kek`,
/// `env` (provider settings to source) and `quickstart.tfvars.json` (inputs for
/// examples/quickstart), then `ready` once the API listens.
pub async fn run_dev(cfg: DevConfig) -> Result<(), DevError> {
    crate::server::install_crypto();
    std::fs::create_dir_all(&cfg.dir).map_err(io("creating", &cfg.dir))?;
    let dir = cfg.dir.canonicalize().map_err(io("resolving", &cfg.dir))?;
    let _ = std::fs::remove_file(dir.join("ready"));
    let etcd_dir = dir.join("etcd");
    let _ = std::fs::remove_dir_all(&etcd_dir);

    let pki = DevPki::generate()?;
    let pki_dir = dir.join("pki");
    pki.write(&pki_dir)?;
    let token_path = dir.join("token");
    let token = hex::encode(rand::random::<[u8; 24]>());
    write_file(&token_path, &token, true)?;
    let kek_path = dir.join("kek");
    write_file(&kek_path, &Kek::generate_encoded(), true)?;

    let state = EtcdProcess::start(&etcd_dir, "state", &pki, EtcdSecurity::default()).await?;
    let mut datastores = Vec::new();
    for i in 1..=cfg.datastores {
        datastores.push(
            EtcdProcess::start(
                &etcd_dir,
                &format!("etcd-{i}"),
                &pki,
                EtcdSecurity::default(),
            )
            .await?,
        );
    }
    let endpoint = format!("https://{}", cfg.listen);
    let tfvars = serde_json::json!({
        "kamaji_endpoint": endpoint,
        "pki_dir": pki_dir,
        "datastore_endpoints": datastores.iter().map(|d| d.endpoint.clone()).collect::<Vec<_>>(),
        // Tenant clusters need somewhere to run their control planes.
        "tenant_clusters": if cfg.kubeconfig.is_some() || cfg.k8s_bin_dir.is_some() { vec!["alpha", "beta"] } else { vec![] },
    });
    write_file(
        &dir.join("quickstart.tfvars.json"),
        &format!("{tfvars:#}\n"),
        false,
    )?;
    let env = format!(
        "export KAMAJI_ENDPOINT={endpoint}\nexport KAMAJI_TOKEN_FILE={}\nexport KAMAJI_CA_CERTIFICATE_FILE={}\n",
        token_path.display(),
        pki_dir.join("ca.crt").display()
    );
    write_file(&dir.join("env"), &env, false)?;

    let serve_cfg = ServeConfig {
        listen: cfg.listen,
        tls_cert_file: pki_dir.join("server.crt"),
        tls_key_file: pki_dir.join("server.key"),
        tokens_file: token_path,
        kek_file: kek_path,
        state_etcd: StateEtcdConfig {
            endpoints: vec![state.endpoint.clone()],
            ca_file: Some(pki_dir.join("ca.crt")),
            cert_file: Some(pki_dir.join("root.crt")),
            key_file: Some(pki_dir.join("root.key")),
        },
        health_interval_seconds: cfg.health_interval_seconds,
        probe_timeout_seconds: 5,
        leader_lease_seconds: 10,
        kubeconfig: cfg.kubeconfig.clone(),
        tenant_dns_domain: "cluster.local".into(),
        tenant_reservation_mib: 64,
        resync_seconds: crate::reconcile::BOOTSTRAP_RESYNC,
        process: crate::config::ProcessRuntimeConfig {
            // An admin cluster wins; else local processes when binaries are given.
            runtime: if cfg.kubeconfig.is_none() && cfg.k8s_bin_dir.is_some() {
                crate::config::RuntimeKind::Process
            } else {
                crate::config::RuntimeKind::Kubernetes
            },
            k8s_bin_dir: cfg.k8s_bin_dir.clone(),
            process_dir: dir.join("tenants"),
            process_port_range: 16443..=16542,
            advertise_address: "127.0.0.1".into(),
        },
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(crate::server::serve(serve_cfg, stop_rx));
    // The listener binds right after the state store answers; wait for the port to accept.
    let start = Instant::now();
    while tokio::net::TcpStream::connect(cfg.listen).await.is_err()
        && start.elapsed() < Duration::from_secs(30)
    {
        if server.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !server.is_finished() {
        write_file(&dir.join("ready"), "", false)?;
        info!(dir = %dir.display(), %endpoint, datastores = datastores.len(), "dev environment ready; source {}/env", dir.display());
        if cfg.kubeconfig.is_none() && cfg.k8s_bin_dir.is_none() {
            info!("no admin cluster (--kubeconfig) and no Kubernetes binaries (--k8s-bin-dir): tenant clusters are refused; datastores work");
        }
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    }
    let result = server.await.unwrap_or(Ok(()));
    let _ = std::fs::remove_file(dir.join("ready"));
    drop(datastores);
    drop(state);
    result.map_err(DevError::from)
}

/// Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
