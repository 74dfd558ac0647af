//! The one-host runtime: each tenant's kube-apiserver, kube-controller-manager and
//! kube-scheduler as supervised local processes, for laptops, CI and edge sites.
//!
//! - apply: checks the binaries for the tenant's version, gives the tenant three ports from the
//!   configured range (kept in its directory, so they survive restarts), writes its certificates
//!   and kubeconfigs (directory 0700, files 0600), and has the supervisor run each component
//!   with the flags [`kamaji_core::controlplane::flags`] computes for pods too. Unchanged flags leave a
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
//!
//! Parts: [`supervisor`] (processes), [`ports`] (the tenant's three ports), [`probe`] (health
//! over TLS); this module is the runtime itself (files, binaries, status).

mod ports;
mod probe;
mod supervisor;

pub use ports::{overlaps_ephemeral, pick_ports};
pub use probe::https_status;
pub use supervisor::{backoff, Command, Supervisor};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kamaji_core::controlplane::files::files;
use kamaji_core::controlplane::flags::{self, FlagInputs, Layout};
use kamaji_core::controlplane::goruntime;
use kamaji_core::controlplane::konnectivity as knp;
use kamaji_core::controlplane::Tenant;
use kamaji_core::ids::TenantName;
use kamaji_core::lifecycle::ports::{PortError, Runtime, RuntimeStatus};
use kamaji_core::pki::TenantPki;
use kamaji_core::spec::Cidr;

use ports::Persisted;

pub const APISERVER: &str = "kube-apiserver";
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const SCHEDULER: &str = "kube-scheduler";
pub const COMPONENTS: [&str; 3] = [APISERVER, CONTROLLER_MANAGER, SCHEDULER];
/// Runs beside the apiserver when the tenant has a Konnectivity tunnel.
pub const KONNECTIVITY_SERVER: &str = "konnectivity-server";
pub const ALL_COMPONENTS: [&str; 4] = [
    APISERVER,
    CONTROLLER_MANAGER,
    SCHEDULER,
    KONNECTIVITY_SERVER,
];

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
    /// The konnectivity server binary (`sigs.k8s.io/apiserver-network-proxy`'s `cmd/server`).
    pub konnectivity_server: PathBuf,
}

/// Parses `kube-apiserver --version` output, `Kubernetes v1.35.2`.
pub fn version_from_output(out: &str) -> Option<String> {
    out.split_whitespace()
        .find(|w| w.starts_with('v') && w[1..].split('.').count() >= 3)
        .map(|w| w.trim_start_matches('v').to_owned())
}

pub struct ProcessRuntime {
    cfg: ProcessConfig,
    supervisor: Arc<Supervisor>,
    /// Serializes port allocation.
    allocating: Mutex<()>,
    versions: Mutex<HashMap<PathBuf, (std::time::SystemTime, Option<String>)>>,
}

impl ProcessRuntime {
    /// Starts the supervisor loop and adopts (or restarts) every tenant found in `cfg.dir`.
    pub fn start(cfg: ProcessConfig) -> Result<Arc<Self>, PortError> {
        let err = |detail: String| PortError {
            op: "starting the process runtime".into(),
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
            for c in ALL_COMPONENTS {
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

    fn err(op: &str, tenant: &str, detail: impl Into<String>) -> PortError {
        PortError {
            op: format!("{op} tenant {tenant}"),
            detail: detail.into(),
        }
    }

    /// The binary of `component` for `version`, checked with `--version`.
    fn binary(&self, tenant: &str, component: &str, version: &str) -> Result<PathBuf, PortError> {
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
                        .and_then(|o| version_from_output(&String::from_utf8_lossy(&o.stdout)));
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

    /// Why a Service range of `cidr`'s family cannot work here: kube-apiserver needs its
    /// advertise address in the family of a single-stack Service range.
    pub fn family_mismatch(&self, cidr: &Cidr) -> Option<String> {
        let net_v6 = !cidr.is_ipv4();
        let host = &self.cfg.advertise_address;
        let addr_v6 = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_ipv6(),
            // A name: resolved by the apiserver; not judged here.
            Err(_) => return None,
        };
        (net_v6 != addr_v6).then(|| {
            format!(
                "{cidr} is an {} range, but this kamajid's process runtime advertises {host} \
                 (--advertise-address), an {} address: kube-apiserver needs its address in the \
                 family of a single-stack Service range",
                if net_v6 { "IPv6" } else { "IPv4" },
                if addr_v6 { "IPv6" } else { "IPv4" },
            )
        })
    }

    /// The binaries of every component for `version`, or why there are none.
    pub fn binaries(&self, version: &str) -> Result<Vec<PathBuf>, PortError> {
        COMPONENTS
            .iter()
            .map(|c| self.binary("(any)", c, version))
            .collect()
    }

    /// Of `versions` (what kamajid is told it serves), those whose binaries are not here, each
    /// with why: a release channel would move tenants to a version that cannot start.
    pub fn unrunnable(&self, versions: &[kamaji_core::spec::Version]) -> Vec<String> {
        versions
            .iter()
            .filter_map(|v| {
                self.binaries(&v.to_string())
                    .err()
                    .map(|e| format!("{v}: {}", e.detail))
            })
            .collect()
    }

    /// The konnectivity server binary, checked to be there.
    pub fn konnectivity_binary(&self) -> Result<PathBuf, PortError> {
        let bin = &self.cfg.konnectivity_server;
        match std::fs::metadata(bin) {
            Ok(m) if m.is_file() => Ok(bin.clone()),
            _ => Err(PortError {
                op: "running a konnectivity server".into(),
                detail: format!(
                    "no konnectivity server at {} (sigs.k8s.io/apiserver-network-proxy {}: \
                     scripts/go-tool.sh konnectivity-server builds it); give its path with \
                     --konnectivity-server-bin",
                    bin.display(),
                    knp::VERSION
                ),
            }),
        }
    }
}

/// Creates or replaces `path` with mode 0600, atomically (a crash leaves the old file or the
/// new one, never half of one).
pub(crate) fn write_private(path: &Path, content: &[u8]) -> Result<(), String> {
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

impl Runtime for ProcessRuntime {
    async fn apply(&self, t: &Tenant<'_>, pki: &TenantPki) -> Result<(), PortError> {
        let version = t.spec.kubernetes_version.to_string();
        let tenant = t.name.as_str();
        let mut bins = Vec::new();
        for c in COMPONENTS {
            bins.push(self.binary(tenant, c, &version)?);
        }
        let dir = self.tenant_dir(tenant);
        let fail = |e: String| Self::err("writing the files of", tenant, e);
        private_dir(&dir).map_err(fail)?;
        let layout = Layout::under(&dir);
        private_dir(Path::new(&layout.etcd_pki_dir)).map_err(fail)?;
        private_dir(Path::new(&layout.config_dir)).map_err(fail)?;
        let ports = self.ports(tenant, &dir)?;
        let local = format!("https://127.0.0.1:{}", ports.apiserver);
        let f = files(t, pki, &local, &layout.konnectivity_socket);
        for (set, under) in [
            (&f.pki, &layout.pki_dir),
            (&f.etcd_pki, &layout.etcd_pki_dir),
            (&f.kubeconfigs, &layout.kubeconfig_dir),
            (&f.config, &layout.config_dir),
        ] {
            for (name, content) in set {
                write_private(&Path::new(under).join(name), content.as_bytes()).map_err(fail)?;
            }
        }
        if t.spec.hibernated {
            // The files stay (renewed certificates land in them); the processes go, and the
            // ports stay assigned so waking serves at the same endpoint.
            let sup = self.supervisor.clone();
            let name = tenant.to_owned();
            return tokio::task::spawn_blocking(move || sup.stop_tenant(&name, &dir))
                .await
                .map_err(|e| Self::err("stopping", tenant, e.to_string()));
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
            // Elected even on one host: a controller-manager waiting for its Lease waits for an
            // apiserver that restarts (a key rotation, an upgrade); one that elects none starts
            // its controllers at once, exits while the apiserver is away, and the supervisor
            // counts those exits as a component that does not start.
            leader_election: true,
            issuer_base: t.issuer_base,
        };
        let res = &t.spec.resources;
        let envs = [
            goruntime::env(&res.apiserver),
            goruntime::env(&res.controller_manager),
            goruntime::env(&res.scheduler),
        ];
        let args = [
            flags::apiserver(t.spec, &inputs),
            flags::controller_manager(t.spec, t.name, &inputs),
            flags::scheduler(t.spec, &inputs),
        ];
        // What each component reads only at start besides its flags. The apiserver reloads its
        // serving certificate and client CAs by itself (a re-issued serving certificate needs no
        // restart), but not its configuration files, its etcd and kubelet client certificates
        // nor the service-account keys; the other two read their kubeconfigs and keys once.
        let digest = |names: &[&str]| {
            let all: String = f
                .pki
                .iter()
                .chain(&f.kubeconfigs)
                .filter(|(n, _)| names.contains(n))
                .map(|(_, c)| c.as_str())
                .collect();
            kamaji_core::pki::fingerprint(&all)
        };
        let fingerprints = [
            format!(
                "{}:{}:{}",
                f.config_sha256(),
                kamaji_core::pki::fingerprint(&format!(
                    "{}{}",
                    pki.etcd_client.cert, pki.apiserver_kubelet_client.cert
                )),
                digest(&["sa.pub", "sa.key"]),
            ),
            digest(&[
                "controller-manager.conf",
                "ca.crt",
                "ca.key",
                "ca-bundle.crt",
                "sa.key",
            ]),
            digest(&["scheduler.conf"]),
        ];
        // The tunnel's server, beside the apiserver; gone when the tunnel is turned off.
        let tunnel = if t.spec.network.konnectivity {
            let ports = self.konnectivity_ports(tenant, &dir)?;
            Some(Command {
                bin: self.konnectivity_binary()?,
                args: knp::server(&layout, ports, "127.0.0.1", 1),
                // It reads its certificate and kubeconfig at start.
                fingerprint: digest(&["apiserver.crt", "apiserver.key", "controller-manager.conf"]),
                env: Vec::new(),
            })
        } else {
            None
        };
        // Replacing a process waits for the old one to end: off the async workers.
        let sup = self.supervisor.clone();
        let name = tenant.to_owned();
        tokio::task::spawn_blocking(move || {
            match tunnel {
                Some(cmd) => sup.ensure(&name, KONNECTIVITY_SERVER, cmd, &dir)?,
                None => sup.stop(&name, KONNECTIVITY_SERVER, &dir),
            }
            for ((((c, bin), args), fingerprint), env) in COMPONENTS
                .into_iter()
                .zip(bins)
                .zip(args)
                .zip(fingerprints)
                .zip(envs)
            {
                sup.ensure(
                    &name,
                    c,
                    Command {
                        bin,
                        args,
                        fingerprint,
                        env,
                    },
                    &dir,
                )?;
            }
            Ok::<(), String>(())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|e| Self::err("starting the control plane of", tenant, e))
    }

    async fn status(&self, t: &Tenant<'_>) -> Result<RuntimeStatus, PortError> {
        let dir = self.tenant_dir(t.name.as_str());
        let Some(p) = std::fs::read(dir.join("ports.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Persisted>(&b).ok())
        else {
            return Ok(RuntimeStatus {
                ready: false,
                endpoint: None,
                message: "control plane not started".into(),
                stalled: None,
                tunnel: None,
            });
        };
        let host = &self.cfg.advertise_address;
        let endpoint = Some(if host.contains(':') {
            format!("https://[{host}]:{}", p.ports.apiserver)
        } else {
            format!("https://{host}:{}", p.ports.apiserver)
        });
        if t.spec.hibernated {
            return Ok(RuntimeStatus {
                ready: false,
                endpoint,
                message: "hibernated: the control plane is stopped".into(),
                stalled: None,
                tunnel: None,
            });
        }
        if let Some(why) = self.supervisor.problems(t.name.as_str()) {
            return Ok(RuntimeStatus {
                ready: false,
                endpoint,
                stalled: self.supervisor.stalled(t.name.as_str()),
                tunnel: None,
                message: why,
            });
        }
        let ca = std::fs::read_to_string(dir.join("pki/ca-bundle.crt")).unwrap_or_default();
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
        let tunnel = p
            .konnectivity
            .filter(|_| t.spec.network.konnectivity)
            .map(|k| {
                if host.contains(':') {
                    format!("[{host}]:{}", k.agent)
                } else {
                    format!("{host}:{}", k.agent)
                }
            });
        Ok(RuntimeStatus {
            ready: waiting.is_empty(),
            endpoint,
            message: waiting.join("; "),
            stalled: self.supervisor.stalled(t.name.as_str()),
            tunnel,
        })
    }

    async fn delete(&self, tenant: &TenantName) -> Result<bool, PortError> {
        let tenant = tenant.as_str();
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

    /// A fake component that reports `version` as the real ones do.
    fn fake_binaries(dir: &Path, version: &str) {
        use std::os::unix::fs::PermissionsExt;
        let d = dir.join(format!("v{version}"));
        std::fs::create_dir_all(&d).unwrap();
        for c in COMPONENTS {
            let p = d.join(c);
            std::fs::write(&p, format!("#!/bin/sh\necho Kubernetes v{version}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[tokio::test]
    async fn served_versions_without_their_binaries_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let bins = tmp.path().join("bin");
        fake_binaries(&bins, "1.37.2");
        let rt = ProcessRuntime::start(ProcessConfig {
            dir: tmp.path().join("tenants"),
            bin_dir: bins.clone(),
            ports: 16443..=16543,
            advertise_address: "127.0.0.1".into(),
            konnectivity_server: bins.join("konnectivity-server"),
        })
        .unwrap();
        let v = |s: &str| kamaji_core::spec::Version::parse(s).unwrap();
        assert!(rt.unrunnable(&[v("1.37.2")]).is_empty());
        let missing = rt.unrunnable(&[v("1.37.2"), v("1.36.3")]);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(
            missing[0].starts_with("1.36.3: no kube-apiserver for Kubernetes v1.36.3"),
            "{missing:?}"
        );
        assert!(rt.konnectivity_binary().is_err());
    }

    #[test]
    fn versions_are_read_from_the_version_flag() {
        assert_eq!(
            version_from_output("Kubernetes v1.35.2\n").as_deref(),
            Some("1.35.2")
        );
        assert_eq!(
            version_from_output("Kubernetes v1.36.0-rc.1").as_deref(),
            Some("1.36.0-rc.1")
        );
        assert_eq!(version_from_output("garbage"), None);
    }
}
