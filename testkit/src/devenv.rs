//! Real etcd, secured as kamajid requires of datastores: a dev PKI and etcd processes started
//! with TLS, client-certificate auth and auth enabled. Variants with client-certificate auth or
//! auth switched off exist so tests can check that kamajid refuses them.

use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use etcd_client::{Client, UserAddOptions};
use kamaji_core::pki::{issue, new_ca, Pem, PkiError};
use tokio::process::{Child, Command};

use kamajid::etcd::{connect, error_chain, EtcdTls};

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("generating dev certificates: {0}")]
    Pki(#[from] PkiError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting etcd {path}: {source} (scripts/install-deps.sh builds etcd {version} into the cache; or set ETCD_BIN)")]
    Spawn {
        path: PathBuf,
        version: &'static str,
        source: std::io::Error,
    },
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
    Serve(#[from] kamajid::server::ServeError),
}

pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DevError {
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
        Self::generate_for(&[])
    }

    /// As [`Self::generate`], the serving certificate also valid for `more` names and
    /// addresses (the host's address, where pods reach its etcds and kamajid).
    pub fn generate_for(more: &[&str]) -> Result<Self, PkiError> {
        let ca = new_ca("kamaji dev CA")?;
        let mut sans = vec!["localhost", "127.0.0.1"];
        sans.extend_from_slice(more);
        let server = issue(&ca, "kamaji-dev-server", &sans)?;
        let root = issue(&ca, "root", &[])?;
        Ok(Self { ca, server, root })
    }

    /// Reads what [`Self::write`] wrote.
    pub fn read(dir: &Path) -> Result<Self, DevError> {
        let pem = |name: &str| -> Result<Pem, DevError> {
            let read = |ext: &str| {
                let p = dir.join(format!("{name}.{ext}"));
                std::fs::read_to_string(&p).map_err(io("reading", &p))
            };
            Ok(Pem {
                cert: read("crt")?,
                key: read("key")?,
            })
        };
        Ok(Self {
            ca: pem("ca")?,
            server: pem("server")?,
            root: pem("root")?,
        })
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

/// Where [`free_port`] looks: below Linux's default ephemeral range (32768-60999), so an
/// outgoing connection never takes the port between the check and the program's bind, and
/// below the process runtime's port ranges in the acceptance tests (20000 up).
const FREE_PORTS: std::ops::Range<u16> = 10000..20000;

/// A loopback port that was free a moment ago. Only for programs that must be told a port
/// (etcd, kube-apiserver): another test may still take it before they bind it, so starters
/// that can ([`EtcdProcess::start`]) try again when their program exits early. kamajid itself
/// takes a bound listener instead ([`kamajid::server::serve`]).
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(FREE_PORTS);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The etcd release the tests and the demo run (`tools/etcd-build/VERSION`).
pub fn etcd_version() -> &'static str {
    include_str!("../../tools/etcd-build/VERSION")
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("unknown")
}

/// Where `scripts/etcd.sh` caches the etcd programs of [`etcd_version`].
pub fn etcd_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache
        .join("kamaji/tools")
        .join(format!("etcd-v{}", etcd_version()))
}

/// The etcd program: `ETCD_BIN`, else the one `scripts/etcd.sh` built. Never whichever `etcd` is
/// on PATH: Debian's is 3.4, out of support and refused by kamajid at registration.
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| etcd_dir().join("etcd"))
}

/// How an etcd is secured. The default is what kamajid requires of a datastore.
#[derive(Debug, Clone, Copy)]
pub struct EtcdSecurity {
    pub client_cert_auth: bool,
    pub auth: bool,
    /// etcd's `--quota-backend-bytes` (None: etcd's default, 2 GiB).
    pub quota_backend_bytes: Option<u64>,
    /// etcd's own periodic compaction, `--auto-compaction-retention` (None: off). For a state
    /// etcd, as the chart runs its bundled one; never for a datastore, which kamajid compacts.
    pub auto_compaction_retention: Option<&'static str>,
}

impl Default for EtcdSecurity {
    fn default() -> Self {
        Self {
            client_cert_auth: true,
            auth: true,
            quota_backend_bytes: None,
            auto_compaction_retention: None,
        }
    }
}

impl EtcdSecurity {
    /// kamajid's state etcd: secured, compacting itself every hour (what the chart's bundled
    /// one and the install guide do), so a long-lived dev environment does not grow.
    pub fn state() -> Self {
        Self {
            auto_compaction_retention: Some("1h"),
            ..Self::default()
        }
    }

    /// Secured as kamajid requires, with a quota of `bytes`.
    pub fn with_quota(bytes: u64) -> Self {
        Self {
            quota_backend_bytes: Some(bytes),
            ..Self::default()
        }
    }
}

/// How long a starting etcd may take to answer; generous, as tests run side by side on two cores.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// Why an etcd did not become ready.
enum Ready {
    Exited(String),
    TimedOut(String),
}

/// An etcd process on loopback (or another address of this host); killed when dropped.
pub struct EtcdProcess {
    pub name: String,
    /// https://127.0.0.1:<port> (or the address it serves on)
    pub endpoint: String,
    pub data_dir: PathBuf,
    /// Prometheus metrics over plain HTTP on loopback, `http://127.0.0.1:<port>/metrics`.
    pub metrics_url: String,
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
        Self::start_on(dir, name, pki, security, IpAddr::from([127, 0, 0, 1])).await
    }

    /// As [`Self::start`], serving clients on `host` (an address of this machine that
    /// `pki.server` is valid for): what pods of an admin cluster on this machine reach.
    pub async fn start_on(
        dir: &Path,
        name: &str,
        pki: &DevPki,
        security: EtcdSecurity,
        host: IpAddr,
    ) -> Result<Self, DevError> {
        let base = dir.join(name);
        let pki_dir = base.join("pki");
        pki.write(&pki_dir)?;
        let tls = EtcdTls {
            ca_pem: Some(pki.ca.cert.clone()),
            identity: Some((pki.root.cert.clone(), pki.root.key.clone())),
        };
        // A port picked by `free_port` can be taken by another test before etcd binds it;
        // etcd then exits at once, and new ports are the cure.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut proc = Self::spawn(&base, name, security, host)?;
            match proc.wait_ready(&tls).await {
                Ok(client) => {
                    if security.auth {
                        enable_auth(client, name).await?;
                    }
                    return Ok(proc);
                }
                Err(Ready::Exited(_)) if attempt < 3 => continue,
                Err(Ready::Exited(detail)) | Err(Ready::TimedOut(detail)) => {
                    return Err(DevError::NotReady {
                        name: name.to_owned(),
                        secs: READY_LIMIT.as_secs(),
                        detail,
                        log: base.join("etcd.log"),
                    })
                }
            }
        }
    }

    /// Spawns etcd on fresh ports, with `base/pki` and a data dir under `base`.
    fn spawn(
        base: &Path,
        name: &str,
        security: EtcdSecurity,
        host: IpAddr,
    ) -> Result<Self, DevError> {
        let pki_dir = base.join("pki");
        let data_dir = base.join("data");
        // A failed attempt may have left a half-initialised member behind.
        let _ = std::fs::remove_dir_all(&data_dir);
        let log = base.join("etcd.log");
        let (client, peer, metrics) = (free_port(), free_port(), free_port());
        let metrics_url = format!("http://127.0.0.1:{metrics}");
        let endpoint = match host {
            IpAddr::V6(h) => format!("https://[{h}]:{client}"),
            IpAddr::V4(h) => format!("https://{h}:{client}"),
        };
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log_file = std::fs::File::create(&log).map_err(io("creating", &log))?;
        let log_err = log_file.try_clone().map_err(io("opening", &log))?;
        let bin = etcd_bin();
        let mut cmd = Command::new(&bin);
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
            .arg("--listen-metrics-urls")
            .arg(&metrics_url)
            .arg("--cert-file")
            .arg(pki_dir.join("server.crt"))
            .arg("--key-file")
            .arg(pki_dir.join("server.key"))
            .arg("--logger")
            .arg("zap")
            .arg("--log-level")
            .arg("warn");
        if let Some(q) = security.quota_backend_bytes {
            cmd.arg(format!("--quota-backend-bytes={q}"));
        }
        if let Some(r) = security.auto_compaction_retention {
            cmd.arg("--auto-compaction-mode=periodic")
                .arg(format!("--auto-compaction-retention={r}"));
        }
        if security.client_cert_auth {
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(pki_dir.join("ca.crt"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| DevError::Spawn {
            path: bin,
            version: etcd_version(),
            source,
        })?;
        Ok(Self {
            name: name.to_owned(),
            endpoint,
            data_dir,
            metrics_url: format!("{metrics_url}/metrics"),
            child,
        })
    }

    /// Waits until etcd answers `status`, or exits, or [`READY_LIMIT`] passes.
    async fn wait_ready(&mut self, tls: &EtcdTls) -> Result<Client, Ready> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < READY_LIMIT {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Ready::Exited(format!(
                    "etcd exited ({status}); last error: {last}"
                )));
            }
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
        Err(Ready::TimedOut(last))
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
