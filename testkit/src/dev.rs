//! `kamajid-dev`: a local, secured environment for `make demo` and for trying kamaji by hand:
//! a state etcd, N etcd datastores and kamajid itself, until interrupted. Writes into its
//! directory: `pki/` (CA, server and root certificates), `token`, `kek`, `env` (provider
//! settings to source) and `quickstart.tfvars.json` (inputs for examples/quickstart), then
//! `ready` once the API listens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use kamaji_core::kek::Kek;
use kamajid::config::{ProcessRuntimeConfig, RuntimeKind, ServeConfig, StateEtcdConfig};
use kamajid::server::wait_for_signal;
use tokio::sync::watch;
use tracing::info;

use crate::devenv::{io, write_file, DevError, DevPki, EtcdProcess, EtcdSecurity};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kamajid-dev",
    version,
    about = "A local, secured development environment: a state etcd, etcd datastores and kamajid"
)]
pub struct DevConfig {
    /// Directory for certificates, etcd data, logs and the generated client settings.
    #[arg(long, env = "KAMAJID_DEV_DIR", default_value = ".demo")]
    pub dir: PathBuf,
    /// How many etcd datastores to start besides the state etcd.
    #[arg(long, default_value_t = 2)]
    pub datastores: usize,
    /// Address the gRPC API listens on.
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address of kamajid's /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:7449")]
    pub metrics_listen: SocketAddr,
    /// Seconds between health probes of each datastore.
    #[arg(long, default_value_t = 5)]
    pub health_interval_seconds: u64,
    /// Kubeconfig of an admin cluster to run tenant control planes in. Without one the dev
    /// environment serves datastores only and the quickstart creates no tenant clusters.
    #[arg(long, env = "KAMAJID_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes server binaries to run tenant control planes as local processes when there is
    /// no admin cluster (flat or in `v<version>/` subdirectories).
    #[arg(long, env = "KAMAJI_K8S_BIN_DIR")]
    pub k8s_bin_dir: Option<PathBuf>,
}

/// A fresh local environment (state etcd, N datastores, kamajid) until
/// interrupted. Writes into `dir`: `pki/` (CA, server and root certificates), `token`, `kek`,
/// `env` (provider settings to source) and `quickstart.tfvars.json` (inputs for
/// examples/quickstart), then `ready` once the API listens.
pub async fn run_dev(cfg: DevConfig) -> Result<(), DevError> {
    kamajid::server::install_crypto();
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

    let state = EtcdProcess::start(&etcd_dir, "state", &pki, EtcdSecurity::state()).await?;
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
        metrics_listen: cfg.metrics_listen,
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
        resync_seconds: kamaji_core::lifecycle::RESYNC_SECONDS,
        certificate_validity_seconds: 365 * 86_400,
        certificate_renew_before_seconds: 30 * 86_400,
        drain_parallel: kamaji_core::lifecycle::drain::DRAIN_PARALLEL as u16,
        service_account_issuer_base_url: None,
        issuer_listen: None,
        // The versions whose binaries are here (`v<version>/`): what release channels move to.
        served_versions: cfg
            .k8s_bin_dir
            .as_deref()
            .map(versions_in)
            .unwrap_or_default(),
        stable_after_patches: kamaji_core::maintenance::STABLE_AFTER_PATCHES,
        // Backups of the dev environment's tenants stay beside it.
        backup_store: Some(format!("file://{}", dir.join("backups").display())),
        process: ProcessRuntimeConfig {
            // An admin cluster wins; else local processes when binaries are given.
            runtime: if cfg.kubeconfig.is_none() && cfg.k8s_bin_dir.is_some() {
                RuntimeKind::Process
            } else {
                RuntimeKind::Kubernetes
            },
            k8s_bin_dir: cfg.k8s_bin_dir.clone(),
            process_dir: dir.join("tenants"),
            process_port_range: 16443..=16542,
            advertise_address: "127.0.0.1".into(),
            // Where scripts/go-tool.sh builds it, when the bin dir has none.
            konnectivity_server_bin: konnectivity_server(cfg.k8s_bin_dir.as_deref()),
        },
        shards: Default::default(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let listener = kamajid::server::bind(serve_cfg.listen).await?;
    let server = tokio::spawn(kamajid::server::serve(serve_cfg, listener, stop_rx));
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

/// The Kubernetes versions of the `v<version>/` directories in `dir` that hold the control plane.
fn versions_in(dir: &std::path::Path) -> Vec<kamaji_core::spec::Version> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        // Only complete ones (a build may have been interrupted).
        .filter(|e| {
            [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ]
            .iter()
            .all(|c| e.path().join(c).is_file())
        })
        .filter_map(|e| kamaji_core::spec::Version::parse(&e.file_name().to_string_lossy()))
        .collect()
}

/// The konnectivity server for the process runtime: `konnectivity-server` in `bin_dir` if there
/// is one, else the one `scripts/go-tool.sh` built at the release kamajid runs, if built.
fn konnectivity_server(bin_dir: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    if bin_dir.is_some_and(|d| d.join("konnectivity-server").is_file()) {
        return None;
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))?;
    let built = cache.join(format!(
        "kamaji/tools/konnectivity-server-{v}/konnectivity-server",
        v = kamaji_core::controlplane::konnectivity::VERSION
    ));
    built.is_file().then_some(built)
}
