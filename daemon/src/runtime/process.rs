//! The one-host runtime: each tenant's kube-apiserver, kube-controller-manager and
//! kube-scheduler as supervised local processes, for laptops, CI and edge sites.
//!
//! - apply: checks the binaries for the tenant's version, gives the tenant three ports from the
//!   configured range (kept in its directory, so they survive restarts), writes its certificates
//!   and kubeconfigs (directory 0700, files 0600), and has the supervisor run each component
//!   with the flags [`crate::controlplane::flags`] computes for pods too. Unchanged flags leave a
//!   running process alone; changed ones restart it.
//! - status: ready when the apiserver answers `/readyz` over TLS verified against the tenant CA
//!   and the other two answer `/healthz`; the endpoint is `https://<advertise address>:<port>`.
//! - delete: ends the tenant's processes by their own PIDs (TERM, then KILL) and removes its
//!   directory. Tenant data lives in the datastore, never here.
//!
//! Processes run in their own process group and outlive kamajid: a restarted kamajid adopts the
//! ones still running (PID files, checked against `/proc/<pid>/cmdline`) and restarts the rest.
//! A component that exits is restarted with exponential backoff (1 s doubling to 60 s).
//!
//! Limits: one replica of each component per tenant, whatever `replicas` says; `network.port`
//! and `service_type` do not apply (ports come from the range); workers must reach the advertise
//! address.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Runtime, RuntimeError, RuntimeStatus};
use crate::controlplane::flags::{self, FlagInputs, Layout, Ports};
use crate::controlplane::render::{files, Tenant};
use crate::pki::TenantPki;

pub const APISERVER: &str = "kube-apiserver";
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const SCHEDULER: &str = "kube-scheduler";
pub const COMPONENTS: [&str; 3] = [APISERVER, CONTROLLER_MANAGER, SCHEDULER];

const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A process up this long has its failure count forgotten.
const STABLE_AFTER: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Where tenant working directories live.
    pub dir: PathBuf,
    /// Kubernetes server binaries: `<dir>/v<version>/<component>` or `<dir>/<component>`.
    pub bin_dir: PathBuf,
    /// Ports handed out, three per tenant.
    pub ports: RangeInclusive<u16>,
    /// Host or IP workers and clients reach apiservers at.
    pub advertise_address: String,
}

/// What runs, as persisted next to the PID file (`<component>.cmd`) so a restarted kamajid can
/// adopt or restart it without the tenant's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub bin: PathBuf,
    pub args: Vec<String>,
}

/// The next backoff after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(6);
    Duration::from_secs(secs).min(BACKOFF_MAX)
}

/// Parses `kube-apiserver --version` output, `Kubernetes v1.35.2`.
pub fn parse_version(out: &str) -> Option<String> {
    out.split_whitespace()
        .find(|w| w.starts_with('v') && w[1..].split('.').count() >= 3)
        .map(|w| w.trim_start_matches('v').to_owned())
}

/// The lowest three free ports of `range` not in `taken`.
pub fn pick_ports(
    range: &RangeInclusive<u16>,
    taken: &BTreeSet<u16>,
    free: impl Fn(u16) -> bool,
) -> Option<Ports> {
    let mut got = Vec::new();
    for p in range.clone() {
        if !taken.contains(&p) && free(p) {
            got.push(u32::from(p));
            if got.len() == 3 {
                return Some(Ports {
                    apiserver: got[0],
                    controller_manager: got[1],
                    scheduler: got[2],
                });
            }
        }
    }
    None
}

/// Whether `ports` overlaps the kernel's ephemeral range `ephemeral` (the contents of
/// `/proc/sys/net/ipv4/ip_local_port_range`, `"32768\t60999"`). Outgoing connections take ports
/// from that range at any moment, so a component given one of them may find it taken when it
/// starts, and crash-loop: the range must stay clear of it.
pub fn overlaps_ephemeral(ports: &RangeInclusive<u16>, ephemeral: &str) -> Option<(u16, u16)> {
    let mut it = ephemeral.split_whitespace().map(|p| p.parse::<u16>().ok());
    let (Some(Some(lo)), Some(Some(hi))) = (it.next(), it.next()) else {
        return None;
    };
    (*ports.start() <= hi && lo <= *ports.end()).then_some((lo, hi))
}

struct Proc {
    cmd: Command,
    log: PathBuf,
    pid_file: PathBuf,
    child: Option<tokio::process::Child>,
    pid: Option<u32>,
    failures: u32,
    started: Instant,
    next_start: Instant,
    last_exit: Option<String>,
    /// Its previous process is being stopped to be replaced: not the restart loop's business.
    replacing: bool,
}

/// Keeps the desired processes running.
#[derive(Default)]
pub struct Supervisor {
    procs: Mutex<HashMap<(String, &'static str), Proc>>,
}

fn pid_alive(pid: u32, bin: &Path) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("X");
    if state == "Z" || state == "X" {
        return false;
    }
    // PIDs are reused: only a process running our binary counts.
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| {
            c.split(|b| *b == 0)
                .next()
                .map(|a0| Path::new(std::str::from_utf8(a0).unwrap_or_default()) == bin)
        })
        .unwrap_or(false)
}

fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a positive PID only sends a signal; no memory is touched.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

impl Supervisor {
    fn spawn(p: &mut Proc) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&p.log)
            .map_err(|e| format!("opening {}: {e}", p.log.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("opening {}: {e}", p.log.display()))?;
        let child = tokio::process::Command::new(&p.cmd.bin)
            .args(&p.cmd.args)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            // Their own group: a Ctrl-C or crash of kamajid leaves tenants running.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", p.cmd.bin.display()))?;
        let pid = child.id();
        if let Some(pid) = pid {
            // A failed write only costs adoption after a kamajid restart: the process is
            // then restarted, not lost.
            if let Err(e) = write_private(&p.pid_file, pid.to_string().as_bytes()) {
                tracing::warn!(error = %e, "writing a PID file");
            }
        }
        p.pid = pid;
        p.child = Some(child);
        p.started = Instant::now();
        Ok(())
    }

    /// Runs `cmd` for `(tenant, component)`: leaves a matching running process alone, adopts a
    /// matching one from a previous kamajid, restarts on change.
    pub fn ensure(
        &self,
        tenant: &str,
        component: &'static str,
        cmd: Command,
        dir: &Path,
    ) -> Result<(), String> {
        let key = (tenant.to_owned(), component);
        let mut procs = self.procs.lock().map_err(|_| "supervisor poisoned")?;
        if let Some(p) = procs.get_mut(&key) {
            if p.cmd == cmd {
                return Ok(());
            }
            write_private(
                &dir.join(format!("{component}.cmd")),
                &encode_command(&cmd)?,
            )?;
            let old = (p.pid.take(), p.child.take(), p.cmd.bin.clone());
            p.cmd = cmd;
            p.failures = 0;
            if p.replacing {
                // Another call is stopping the old process; it starts the newest command.
                return Ok(());
            }
            p.replacing = true;
            // The old process may take STOP_GRACE to end: wait without the lock, so the other
            // tenants' restarts and status reads go on meanwhile.
            drop(procs);
            if let Some(pid) = old.0 {
                stop_pid(pid, &old.2);
            }
            drop(old.1);
            let mut procs = self.procs.lock().map_err(|_| "supervisor poisoned")?;
            // Gone if the tenant was stopped meanwhile: then nothing is to start.
            return match procs.get_mut(&key) {
                Some(p) => {
                    p.replacing = false;
                    Self::spawn(p)
                }
                None => Ok(()),
            };
        }
        let pid_file = dir.join(format!("{component}.pid"));
        let cmd_file = dir.join(format!("{component}.cmd"));
        let previous: Option<Command> = std::fs::read(&cmd_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let running = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|pid| pid_alive(*pid, &cmd.bin));
        let mut p = Proc {
            cmd: cmd.clone(),
            log: dir.join(format!("{component}.log")),
            pid_file,
            child: None,
            pid: None,
            failures: 0,
            started: Instant::now(),
            next_start: Instant::now(),
            last_exit: None,
            replacing: false,
        };
        match running {
            Some(pid) if previous.as_ref() == Some(&cmd) => {
                tracing::info!(tenant, component, pid, "adopted running process");
                p.pid = Some(pid);
            }
            other => {
                if let Some(pid) = other {
                    stop_pid(pid, &cmd.bin);
                }
                write_private(&cmd_file, &encode_command(&cmd)?)?;
                Self::spawn(&mut p)?;
            }
        }
        procs.insert(key, p);
        Ok(())
    }

    /// One pass: restarts what died, once its backoff has passed.
    pub fn tick(&self) {
        let Ok(mut procs) = self.procs.lock() else {
            return;
        };
        let now = Instant::now();
        for ((tenant, component), p) in procs.iter_mut().filter(|(_, p)| !p.replacing) {
            let exited = match (&mut p.child, p.pid) {
                (Some(child), _) => match child.try_wait() {
                    Ok(Some(status)) => Some(status.to_string()),
                    Ok(None) => None,
                    Err(e) => Some(e.to_string()),
                },
                (None, Some(pid)) if !pid_alive(pid, &p.cmd.bin) => Some("exited".to_owned()),
                (None, Some(_)) => None,
                (None, None) => Some("not running".to_owned()),
            };
            match exited {
                None => {
                    if p.failures > 0 && p.started.elapsed() > STABLE_AFTER {
                        p.failures = 0;
                    }
                }
                Some(why) => {
                    if p.pid.is_some() {
                        p.failures += 1;
                        p.next_start = now + backoff(p.failures);
                        tracing::warn!(tenant = %tenant, component = %component, status = %why, restarts = p.failures, "component exited; restarting after backoff");
                        p.last_exit = Some(why);
                        p.child = None;
                        p.pid = None;
                    }
                    if now >= p.next_start {
                        if let Err(e) = Self::spawn(p) {
                            p.failures += 1;
                            p.next_start = now + backoff(p.failures);
                            p.last_exit = Some(e);
                        }
                    }
                }
            }
        }
    }

    /// Why a tenant's components are not all running, if they are not.
    pub fn problems(&self, tenant: &str) -> Option<String> {
        let procs = self.procs.lock().ok()?;
        let mut out = Vec::new();
        for c in COMPONENTS {
            match procs.get(&(tenant.to_owned(), c)) {
                None => out.push(format!("{c} not started")),
                Some(p) if p.pid.is_none() => out.push(format!(
                    "{c} {} ({} restarts; log {})",
                    p.last_exit.as_deref().unwrap_or("not running"),
                    p.failures,
                    p.log.display()
                )),
                Some(_) => {}
            }
        }
        (!out.is_empty()).then(|| out.join("; "))
    }

    /// PIDs of a tenant's running components.
    pub fn pids(&self, tenant: &str) -> Vec<(&'static str, u32)> {
        let Ok(procs) = self.procs.lock() else {
            return Vec::new();
        };
        COMPONENTS
            .iter()
            .filter_map(|c| {
                procs
                    .get(&(tenant.to_owned(), *c))
                    .and_then(|p| p.pid.map(|pid| (*c, pid)))
            })
            .collect()
    }

    /// Ends a tenant's processes and forgets them; also those only known from PID files.
    pub fn stop_tenant(&self, tenant: &str, dir: &Path) {
        let mut known = Vec::new();
        if let Ok(mut procs) = self.procs.lock() {
            for c in COMPONENTS {
                if let Some(mut p) = procs.remove(&(tenant.to_owned(), c)) {
                    if let Some(pid) = p.pid {
                        known.push((pid, p.cmd.bin.clone()));
                    }
                    // Reap our own child once it is gone.
                    if let Some(mut child) = p.child.take() {
                        tokio::spawn(async move {
                            let _ = child.wait().await;
                        });
                    }
                }
            }
        }
        for c in COMPONENTS {
            let pid = std::fs::read_to_string(dir.join(format!("{c}.pid")))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            let cmd: Option<Command> = std::fs::read(dir.join(format!("{c}.cmd")))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let (Some(pid), Some(cmd)) = (pid, cmd) {
                if !known.iter().any(|(p, _)| *p == pid) {
                    known.push((pid, cmd.bin));
                }
            }
        }
        for (pid, bin) in known {
            stop_pid(pid, &bin);
        }
    }
}

/// TERM, up to [`STOP_GRACE`] to exit, then KILL. Only if `pid` still runs `bin`.
fn stop_pid(pid: u32, bin: &Path) {
    if !pid_alive(pid, bin) {
        return;
    }
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if !pid_alive(pid, bin) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(pid, libc::SIGKILL);
}

pub struct ProcessRuntime {
    cfg: ProcessConfig,
    supervisor: Arc<Supervisor>,
    /// Serializes port allocation.
    allocating: Mutex<()>,
    versions: Mutex<HashMap<PathBuf, (std::time::SystemTime, Option<String>)>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Persisted {
    ports: Ports,
}

impl ProcessRuntime {
    /// Starts the supervisor loop and adopts (or restarts) every tenant found in `cfg.dir`.
    pub fn start(cfg: ProcessConfig) -> Result<Arc<Self>, RuntimeError> {
        let err = |detail: String| RuntimeError {
            op: "starting",
            tenant: "-".into(),
            detail,
        };
        if let Some((lo, hi)) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|e| overlaps_ephemeral(&cfg.ports, &e))
        {
            return Err(err(format!(
                "--process-port-range {}-{} overlaps this host's ephemeral ports {lo}-{hi} \
                 (net.ipv4.ip_local_port_range), which outgoing connections take at any time; \
                 choose a range outside it, e.g. 16443-17442",
                cfg.ports.start(),
                cfg.ports.end()
            )));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.dir)
            .map_err(|e| err(format!("creating {}: {e}", cfg.dir.display())))?;
        let rt = Arc::new(Self {
            cfg,
            supervisor: Arc::default(),
            allocating: Mutex::new(()),
            versions: Mutex::default(),
        });
        for (tenant, dir) in rt.tenant_dirs() {
            for c in COMPONENTS {
                let cmd: Option<Command> = std::fs::read(dir.join(format!("{c}.cmd")))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                if let Some(cmd) = cmd {
                    if let Err(e) = rt.supervisor.ensure(&tenant, c, cmd, &dir) {
                        tracing::warn!(tenant = %tenant, component = c, error = %e, "resuming component");
                    }
                }
            }
        }
        let sup = Arc::downgrade(&rt.supervisor);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                match sup.upgrade() {
                    Some(s) => s.tick(),
                    None => return,
                }
            }
        });
        Ok(rt)
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    pub fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.cfg.dir.join(tenant)
    }

    fn tenant_dirs(&self) -> Vec<(String, PathBuf)> {
        std::fs::read_dir(&self.cfg.dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn err(op: &'static str, tenant: &str, detail: impl Into<String>) -> RuntimeError {
        RuntimeError {
            op,
            tenant: tenant.to_owned(),
            detail: detail.into(),
        }
    }

    /// The binary of `component` for `version`, checked with `--version`.
    fn binary(
        &self,
        tenant: &str,
        component: &str,
        version: &str,
    ) -> Result<PathBuf, RuntimeError> {
        let candidates = [
            self.cfg.bin_dir.join(format!("v{version}")).join(component),
            self.cfg.bin_dir.join(component),
        ];
        let mut found = Vec::new();
        for path in candidates {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            let cached = self.versions.lock().ok().and_then(|v| {
                v.get(&path)
                    .filter(|(t, _)| *t == mtime)
                    .map(|(_, v)| v.clone())
            });
            let got = match cached {
                Some(v) => v,
                None => {
                    let v = std::process::Command::new(&path)
                        .arg("--version")
                        .output()
                        .ok()
                        .and_then(|o| parse_version(&String::from_utf8_lossy(&o.stdout)));
                    if let Ok(mut c) = self.versions.lock() {
                        c.insert(path.clone(), (mtime, v.clone()));
                    }
                    v
                }
            };
            if got.as_deref() == Some(version) {
                return Ok(path);
            }
            found.push(format!(
                "{} is {}",
                path.display(),
                got.map_or("not runnable".to_owned(), |v| format!("v{v}"))
            ));
        }
        let mut available: Vec<String> = std::fs::read_dir(&self.cfg.bin_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(component).exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        available.sort();
        found.extend(available.into_iter().map(|v| format!("{v}/ has one")));
        Err(Self::err(
            "starting the control plane of",
            tenant,
            format!(
                "no {component} for Kubernetes v{version} in {} ({}); put the v{version} server binaries in {}/v{version}/ or use a version that is there",
                self.cfg.bin_dir.display(),
                if found.is_empty() { "it has none".to_owned() } else { found.join(", ") },
                self.cfg.bin_dir.display(),
            ),
        ))
    }

    fn ports(&self, tenant: &str, dir: &Path) -> Result<Ports, RuntimeError> {
        let file = dir.join("ports.json");
        if let Some(p) = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Persisted>(&b).ok())
        {
            return Ok(p.ports);
        }
        let _one = self.allocating.lock();
        let mut taken = BTreeSet::new();
        for (_, d) in self.tenant_dirs() {
            if let Some(p) = std::fs::read(d.join("ports.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Persisted>(&b).ok())
            {
                for port in [
                    p.ports.apiserver,
                    p.ports.controller_manager,
                    p.ports.scheduler,
                ] {
                    taken.insert(u16::try_from(port).unwrap_or(0));
                }
            }
        }
        let ports = pick_ports(&self.cfg.ports, &taken, |p| {
            std::net::TcpListener::bind(("0.0.0.0", p)).is_ok()
        })
        .ok_or_else(|| {
            Self::err(
                "starting the control plane of",
                tenant,
                format!(
                    "no three free ports left in {}-{}; widen --process-port-range",
                    self.cfg.ports.start(),
                    self.cfg.ports.end()
                ),
            )
        })?;
        write_private(
            &file,
            &serde_json::to_vec(&Persisted { ports }).unwrap_or_default(),
        )
        .map_err(|e| Self::err("writing the ports of", tenant, e))?;
        Ok(ports)
    }
}

fn encode_command(cmd: &Command) -> Result<Vec<u8>, String> {
    serde_json::to_vec(cmd)
        .map_err(|e| format!("encoding the command of {}: {e}", cmd.bin.display()))
}

/// Creates or replaces `path` with mode 0600, atomically (a crash leaves the old file or the
/// new one, never half of one).
fn write_private(path: &Path, content: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    f.write_all(content)
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn private_dir(path: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))
}

/// GET `path` over TLS; `ca` verifies the server when given, else any certificate is accepted
/// (loopback health endpoints with self-signed certificates). Returns the status code.
pub async fn https_status(addr: SocketAddr, path: &str, ca: Option<&str>) -> Result<u16, String> {
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let cfg = match ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            use rustls::pki_types::pem::PemObject;
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()).flatten() {
                roots.add(c).map_err(|e| e.to_string())?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let io = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::IpAddress(addr.ip().into());
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 512];
        let n = tls.read(&mut buf).await.map_err(|e| e.to_string())?;
        let head = String::from_utf8_lossy(&buf[..n]);
        head.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {head:?}"))
    };
    tokio::time::timeout(Duration::from_secs(3), io)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// Accepts any server certificate: only for loopback health checks of components whose
/// certificates are self-signed at start.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Runtime for ProcessRuntime {
    async fn apply(&self, t: &Tenant<'_>, pki: &TenantPki) -> Result<(), RuntimeError> {
        let version = t.spec.kubernetes_version.trim_start_matches('v').to_owned();
        let mut bins = Vec::new();
        for c in COMPONENTS {
            bins.push(self.binary(t.name, c, &version)?);
        }
        let dir = self.tenant_dir(t.name);
        let fail = |e: String| Self::err("writing the files of", t.name, e);
        private_dir(&dir).map_err(fail)?;
        let layout = Layout::under(&dir);
        private_dir(Path::new(&layout.etcd_pki_dir)).map_err(fail)?;
        let ports = self.ports(t.name, &dir)?;
        let local = format!("https://127.0.0.1:{}", ports.apiserver);
        let f = files(t, pki, &local);
        for (set, under) in [
            (&f.pki, &layout.pki_dir),
            (&f.etcd_pki, &layout.etcd_pki_dir),
            (&f.kubeconfigs, &layout.kubeconfig_dir),
        ] {
            for (name, content) in set {
                write_private(&Path::new(under).join(name), content.as_bytes()).map_err(fail)?;
            }
        }
        let inputs = FlagInputs {
            tenant_id: t.id,
            etcd_endpoints: t.etcd_endpoints,
            dns_domain: t.dns_domain,
            layout: &layout,
            ports,
            health_bind_address: "127.0.0.1",
            // Pods on workers reach the apiserver at the host's address and the tenant's port.
            // kube-apiserver refuses a loopback one (the `kubernetes` Service must be reachable
            // from pods): then it publishes its host's own address.
            advertise_address: self
                .cfg
                .advertise_address
                .parse::<std::net::IpAddr>()
                .ok()
                .filter(|ip| !ip.is_loopback()),
        };
        let args = [
            flags::apiserver(t.spec, &inputs),
            flags::controller_manager(t.spec, t.name, &inputs),
            flags::scheduler(t.spec, &inputs),
        ];
        // Replacing a process waits for the old one to end: off the async workers.
        let sup = self.supervisor.clone();
        let name = t.name.to_owned();
        tokio::task::spawn_blocking(move || {
            for ((c, bin), args) in COMPONENTS.into_iter().zip(bins).zip(args) {
                sup.ensure(&name, c, Command { bin, args }, &dir)?;
            }
            Ok::<(), String>(())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|e| Self::err("starting the control plane of", t.name, e))
    }

    async fn status(&self, t: &Tenant<'_>) -> Result<RuntimeStatus, RuntimeError> {
        let dir = self.tenant_dir(t.name);
        let Some(p) = std::fs::read(dir.join("ports.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Persisted>(&b).ok())
        else {
            return Ok(RuntimeStatus {
                ready: false,
                endpoint: None,
                message: "control plane not started".into(),
            });
        };
        let host = &self.cfg.advertise_address;
        let endpoint = Some(if host.contains(':') {
            format!("https://[{host}]:{}", p.ports.apiserver)
        } else {
            format!("https://{host}:{}", p.ports.apiserver)
        });
        if let Some(why) = self.supervisor.problems(t.name) {
            return Ok(RuntimeStatus {
                ready: false,
                endpoint,
                message: why,
            });
        }
        let ca = std::fs::read_to_string(dir.join("pki/ca.crt")).unwrap_or_default();
        let mut waiting = Vec::new();
        for (c, port, path, ca) in [
            (APISERVER, p.ports.apiserver, "/readyz", Some(ca.as_str())),
            (
                CONTROLLER_MANAGER,
                p.ports.controller_manager,
                "/healthz",
                None,
            ),
            (SCHEDULER, p.ports.scheduler, "/healthz", None),
        ] {
            let addr = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap_or(0)));
            match https_status(addr, path, ca).await {
                Ok(200) => {}
                Ok(code) => waiting.push(format!("{c} {path} answered {code}")),
                Err(e) => waiting.push(format!("{c} {path}: {e}")),
            }
        }
        Ok(RuntimeStatus {
            ready: waiting.is_empty(),
            endpoint,
            message: waiting.join("; "),
        })
    }

    async fn delete(&self, tenant: &str) -> Result<bool, RuntimeError> {
        let dir = self.tenant_dir(tenant);
        let sup = self.supervisor.clone();
        let d = dir.clone();
        let name = tenant.to_owned();
        tokio::task::spawn_blocking(move || sup.stop_tenant(&name, &d))
            .await
            .map_err(|e| Self::err("stopping", tenant, e.to_string()))?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(Self::err(
                "removing the directory of",
                tenant,
                format!("{}: {e}", dir.display()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute() {
        let s: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(s, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn versions_are_read_from_the_version_flag() {
        assert_eq!(
            parse_version("Kubernetes v1.35.2\n").as_deref(),
            Some("1.35.2")
        );
        assert_eq!(
            parse_version("Kubernetes v1.36.0-rc.1").as_deref(),
            Some("1.36.0-rc.1")
        );
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn a_port_range_inside_the_ephemeral_range_is_refused() {
        assert_eq!(
            overlaps_ephemeral(&(34000..=34099), "32768\t60999\n"),
            Some((32768, 60999))
        );
        assert_eq!(
            overlaps_ephemeral(&(60999..=61100), "32768 60999"),
            Some((32768, 60999))
        );
        assert_eq!(overlaps_ephemeral(&(16443..=17442), "32768\t60999"), None);
        assert_eq!(overlaps_ephemeral(&(16443..=17442), "garbage"), None);
    }

    #[test]
    fn ports_are_the_lowest_free_three_in_range() {
        let taken: BTreeSet<u16> = [16443, 16445].into();
        let p = pick_ports(&(16443..=16450), &taken, |p| p != 16446).unwrap();
        assert_eq!(
            (p.apiserver, p.controller_manager, p.scheduler),
            (16444, 16447, 16448)
        );
        assert!(pick_ports(&(16443..=16444), &BTreeSet::new(), |_| true).is_none());
    }
}
