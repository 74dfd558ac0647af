//! Wiring: load secrets and settings, connect to the state etcd, start the leader campaign and
//! the health loop, and serve the API until shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kamaji_proto::v1::bootstrap_tokens_server::BootstrapTokensServer;
use kamaji_proto::v1::datastores_server::DatastoresServer;
use kamaji_proto::v1::tenant_backups_server::TenantBackupsServer;
use kamaji_proto::v1::tenant_clusters_server::TenantClustersServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;
use tracing::info;

use kamaji_core::kek::{Kek, KekError};
use kamaji_core::lifecycle::ports::{PortError, Runtime};
use kamaji_core::lifecycle::{Lifecycle, Settings};
use kamaji_core::placement::Policy;

use crate::api::auth::{Tokens, TokensError};
use crate::api::backups::BackupApi;
use crate::api::bootstrap_tokens::BootstrapTokenApi;
use crate::api::datastores::DatastoreApi;
use crate::api::tenants::TenantApi;
use crate::config::RuntimeKind;
use crate::config::{ServeConfig, StateEtcdConfig};
use crate::datastore::isolation::EtcdIsolation;
use crate::datastore::usage::UsageTracker;
use crate::datastore::{health, probe::EtcdProber};
use crate::etcd::{connect, error_chain, EtcdTls};
use crate::leader;
use crate::runtime::kubernetes::KubeRuntime;
use crate::runtime::process::{ProcessConfig, ProcessRuntime};
use crate::service::TenantService;
use crate::store::Store;
use crate::tenant_client::KubeTenantObjects;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key-encryption key file {path}: {source}")]
    Kek { path: PathBuf, source: KekError },
    #[error(transparent)]
    Tokens(#[from] TokensError),
    #[error("connecting to the state etcd at {endpoints}: {detail}")]
    StateEtcd { endpoints: String, detail: String },
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("serving the API: {0}")]
    Transport(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Runtime(#[from] PortError),
}

fn read(path: &Path) -> Result<String, ServeError> {
    std::fs::read_to_string(path).map_err(|source| ServeError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Installs the process-wide TLS crypto provider (ring); harmless when already installed.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Connects to the state etcd and checks it answers, so a misconfiguration fails at start.
pub async fn connect_state(cfg: &StateEtcdConfig) -> Result<Store, ServeError> {
    let err = |detail: String| ServeError::StateEtcd {
        endpoints: cfg.endpoints.join(","),
        detail,
    };
    let identity = match (&cfg.cert_file, &cfg.key_file) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        _ => None,
    };
    let tls = EtcdTls {
        ca_pem: cfg.ca_file.as_deref().map(read).transpose()?,
        identity,
    };
    let client = connect(&cfg.endpoints, &tls, std::time::Duration::from_secs(5))
        .await
        .map_err(|e| err(error_chain(&e)))?;
    let store = Store::new(client);
    store.ping().await.map_err(|e| err(error_chain(&e)))?;
    Ok(store)
}

/// The admin-cluster client: from `--kubeconfig`, else inferred (in-cluster, KUBECONFIG,
/// ~/.kube/config). `None`, logged, when there is no admin cluster to talk to.
async fn kube_client(path: Option<&Path>) -> Option<kube::Client> {
    let config = match path {
        Some(p) => {
            let kc = match kube::config::Kubeconfig::read_from(p) {
                Ok(kc) => kc,
                Err(e) => {
                    tracing::error!(path = %p.display(), error = %e, "reading --kubeconfig; tenant clusters disabled");
                    return None;
                }
            };
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| e.to_string())
        }
        None => kube::Config::infer().await.map_err(|e| e.to_string()),
    };
    match config.and_then(|c| kube::Client::try_from(c).map_err(|e| e.to_string())) {
        Ok(c) => {
            info!("control-plane runtime: Kubernetes (admin cluster)");
            Some(c)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no admin cluster configured; tenant cluster creation is refused until kamajid has one");
            None
        }
    }
}

/// What every lifecycle needs besides its runtime.
struct LifecycleParts {
    store: Store,
    kek: Kek,
    usage: Arc<UsageTracker>,
    shards: Arc<health::Shards>,
    settings: Settings,
    etcd_timeout: std::time::Duration,
    wake: Arc<tokio::sync::Notify>,
    leading: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<crate::metrics::Metrics>,
    backups: Option<Arc<crate::backup::Backups>>,
}

impl LifecycleParts {
    fn spawn<R: Runtime + crate::runtime::Capabilities>(
        self,
        runtime: Arc<R>,
    ) -> (
        tokio::task::JoinHandle<()>,
        Arc<dyn crate::runtime::Capabilities>,
    ) {
        let capabilities: Arc<dyn crate::runtime::Capabilities> = runtime.clone();
        let life = Arc::new(
            Lifecycle::new(
                self.store,
                EtcdIsolation::new(self.kek.clone(), self.etcd_timeout, self.usage, self.shards)
                    .with_backups(self.backups.clone()),
                runtime,
                KubeTenantObjects,
                self.kek,
                self.settings,
            )
            .with_observer(self.metrics),
        );
        let task = tokio::spawn(life.run(
            std::time::Duration::from_secs(2),
            self.wake,
            self.leading,
            self.shutdown,
        ));
        (task, capabilities)
    }
}

/// Binds the API's listener: callers (and tests) bind first, so a port is never released and
/// taken again between choosing and serving.
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })
}

/// Runs kamajid until `shutdown` turns true.
pub async fn serve(
    cfg: ServeConfig,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    install_crypto();
    let (certificate_validity, certificate_renew_before) =
        cfg.certificate_lifetimes().map_err(ServeError::Config)?;
    let tokens = Tokens::load(&cfg.tokens_file)?;
    let kek = Kek::from_encoded(&read(&cfg.kek_file)?).map_err(|source| ServeError::Kek {
        path: cfg.kek_file.clone(),
        source,
    })?;
    let identity = Arc::new(crate::reload::ServingIdentity::new(
        crate::reload::load_identity(&cfg.tls_cert_file, &cfg.tls_key_file)
            .map_err(|e| ServeError::Config(e.to_string()))?,
    ));
    let issuer_base = cfg.issuer_base().map_err(ServeError::Config)?;
    let store = connect_state(&cfg.state_etcd).await?;
    let probes_listener = crate::observe::bind(cfg.metrics_listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: cfg.metrics_listen,
            source,
        })?;
    let issuer_listener = match cfg.issuer_listen {
        Some(addr) => Some(
            crate::issuer::bind(addr)
                .await
                .map_err(|source| ServeError::Listen { addr, source })?,
        ),
        None => None,
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let prober = Arc::new(EtcdProber {
        timeout: cfg.probe_timeout(),
        allow_vulnerable: cfg.shards.allow_vulnerable_etcd,
    });

    let (leading_tx, leading_rx) = watch::channel(false);
    let probes = tokio::spawn(crate::observe::serve(
        probes_listener,
        crate::observe::Observed {
            store: store.clone(),
            metrics: metrics.clone(),
            leading: leading_rx.clone(),
        },
        shutdown.clone(),
    ));
    let issuers = match (issuer_listener, &issuer_base) {
        (Some(listener), Some(base)) => {
            info!(addr = ?listener.local_addr().ok(), base = %base, "serving service-account issuers");
            Some(tokio::spawn(crate::issuer::serve(
                listener,
                crate::issuer::Issuers {
                    store: store.clone(),
                    kek: kek.clone(),
                    base: base.clone(),
                },
                shutdown.clone(),
            )))
        }
        (Some(_), None) => {
            return Err(ServeError::Config(
                "--issuer-listen serves issuers under --service-account-issuer-base-url: set both"
                    .into(),
            ))
        }
        _ => None,
    };
    let id = format!(
        "{}-{}",
        std::process::id(),
        kamaji_core::lifecycle::now_unix()
    );
    let campaign = tokio::spawn(leader::run(
        store.client(),
        id,
        cfg.leader_lease_seconds,
        leading_tx,
        shutdown.clone(),
    ));
    let shards = Arc::new(health::Shards::default());
    let health = tokio::spawn(health::run(
        store.clone(),
        kek.clone(),
        prober.clone(),
        health::Upkeep {
            policy: cfg.shards.policy(),
            shards: shards.clone(),
            timeout: cfg.probe_timeout(),
        },
        cfg.health_interval(),
        leading_rx.clone(),
        shutdown.clone(),
    ));

    let wake = Arc::new(tokio::sync::Notify::new());
    // Walls go up from the watch of each shard, on the leader, and wake the lifecycle.
    let usage = UsageTracker::enforcing(
        kek.clone(),
        cfg.probe_timeout(),
        2 * cfg.shards.compaction_retention_seconds,
        Some(wake.clone()),
        Some(leading_rx.clone()),
    );
    usage.count_walls_in(metrics.clone());
    // Every replica measures, so any can answer the API; a new datastore is picked up within
    // seconds (listing the records is one read of kamajid's own store).
    let measuring = tokio::spawn(usage.clone().run(
        store.clone(),
        std::time::Duration::from_secs(5),
        shutdown.clone(),
    ));

    let backups = match &cfg.backup_store {
        Some(url) => {
            let opened = crate::backup::store::open(url)
                .map_err(|e| ServeError::Config(format!("--backup-store: {e}")))?;
            info!(store = %opened.describe, "backup store");
            Some(crate::backup::Backups::new(
                opened,
                store.clone(),
                kek.clone(),
            ))
        }
        None => None,
    };
    let parts = LifecycleParts {
        backups: backups.clone(),
        store: store.clone(),
        kek: kek.clone(),
        usage: usage.clone(),
        shards,
        settings: Settings {
            policy: Policy::Spread,
            dns_domain: cfg.tenant_dns_domain.clone(),
            resync_seconds: cfg.resync_seconds.max(1),
            certificate_validity,
            certificate_renew_before,
            drain_parallel: usize::from(cfg.drain_parallel),
            issuer_base: issuer_base.clone(),
            served: cfg.served(),
        },
        etcd_timeout: cfg.probe_timeout(),
        wake: wake.clone(),
        leading: leading_rx.clone(),
        shutdown: shutdown.clone(),
        metrics: metrics.clone(),
    };
    let reconciler = match cfg.process.runtime {
        RuntimeKind::Kubernetes => kube_client(cfg.kubeconfig.as_deref())
            .await
            .map(|client| parts.spawn(Arc::new(KubeRuntime::watching(client)))),
        RuntimeKind::Process => {
            let p = &cfg.process;
            let bin_dir = p.k8s_bin_dir.clone().ok_or_else(|| {
                ServeError::Config(
                    "--runtime=process needs --k8s-bin-dir (or KAMAJID_K8S_BIN_DIR): a directory with \
                     kube-apiserver, kube-controller-manager and kube-scheduler"
                        .into(),
                )
            })?;
            info!(bin_dir = %bin_dir.display(), dir = %p.process_dir.display(), "control-plane runtime: local processes");
            let rt = ProcessRuntime::start(ProcessConfig {
                dir: p.process_dir.clone(),
                konnectivity_server: p
                    .konnectivity_server_bin
                    .clone()
                    .unwrap_or_else(|| bin_dir.join("konnectivity-server")),
                bin_dir,
                ports: p.process_port_range.clone(),
                advertise_address: p.advertise_address.clone(),
            })?;
            let unrunnable = rt.unrunnable(&cfg.served_versions);
            if !unrunnable.is_empty() {
                return Err(ServeError::Config(format!(
                    "--served-versions names versions this host cannot run, which release \
                     channels would upgrade tenants to: {}",
                    unrunnable.join("; ")
                )));
            }
            Some(parts.spawn(rt))
        }
    };
    let (reconciler, runtime) = match reconciler {
        Some((task, caps)) => (Some(task), Some(caps)),
        None => (None, None),
    };
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: cfg.listen,
        source,
    })?;
    info!(%addr, "kamajid API listening (TLS, bearer tokens)");
    let service = Arc::new(TenantService {
        store: store.clone(),
        kek: kek.clone(),
        wake,
        reservation_bytes: cfg.tenant_reservation_mib.saturating_mul(1024 * 1024),
        usage: usage.clone(),
        observer: metrics.clone(),
        issuer_base: issuer_base.clone(),
        served: cfg.served(),
        backups: backups.clone(),
    });
    let tenants = TenantClustersServer::with_interceptor(
        TenantApi {
            service: service.clone(),
            runtime,
        },
        tokens.clone().interceptor(),
    );
    // Backup schedules run on the leader, beside the lifecycle.
    let scheduling = backups.clone().map(|b| {
        tokio::spawn(
            Arc::new(crate::backup::schedule::Scheduler {
                service: service.clone(),
                backups: b,
                etcd_timeout: cfg.probe_timeout(),
                clock: Arc::new(kamaji_core::lifecycle::ports::SystemClock),
            })
            .run(leading_rx.clone(), shutdown.clone()),
        )
    });
    let backups_api = TenantBackupsServer::with_interceptor(
        BackupApi {
            service: service.clone(),
            backups,
            etcd_timeout: cfg.probe_timeout(),
        },
        tokens.clone().interceptor(),
    );
    let tokens_api = BootstrapTokensServer::with_interceptor(
        BootstrapTokenApi { service },
        tokens.clone().interceptor(),
    );
    let datastores = DatastoresServer::with_interceptor(
        DatastoreApi {
            store: store.clone(),
            kek: kek.clone(),
            prober,
            usage,
        },
        tokens.clone().interceptor(),
    );
    let grpc_health = crate::observe::health_reporter(
        store.clone(),
        &[
            kamaji_proto::v1::datastores_server::SERVICE_NAME,
            kamaji_proto::v1::tenant_clusters_server::SERVICE_NAME,
            kamaji_proto::v1::bootstrap_tokens_server::SERVICE_NAME,
            kamaji_proto::v1::tenant_backups_server::SERVICE_NAME,
        ],
        shutdown.clone(),
    );
    let reloading = tokio::spawn(crate::reload::run(
        crate::reload::Watched {
            cert: cfg.tls_cert_file.clone(),
            key: cfg.tls_key_file.clone(),
            identity: identity.clone(),
            tokens_file: cfg.tokens_file.clone(),
            tokens: tokens.clone(),
        },
        shutdown.clone(),
    ));
    let rekeying = tokio::spawn(crate::reload::run_kek(
        store.clone(),
        kek.clone(),
        cfg.kek_file.clone(),
        leading_rx.clone(),
        shutdown.clone(),
    ));
    let incoming = crate::reload::incoming(
        listener,
        identity.server_config(),
        metrics.clone(),
        shutdown.clone(),
    );
    let served = Server::builder()
        .layer(crate::metrics::CallsLayer(metrics))
        .add_service(grpc_health)
        .add_service(datastores)
        .add_service(tenants)
        .add_service(tokens_api)
        .add_service(backups_api)
        .serve_with_incoming_shutdown(incoming, async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
        .map_err(|e| ServeError::Transport(error_chain(&e)));
    let _ = tokio::join!(campaign, health, measuring, probes, reloading, rekeying);
    if let Some(i) = issuers {
        let _ = i.await;
    }
    if let Some(r) = reconciler {
        let _ = r.await;
    }
    if let Some(s) = scheduling {
        let _ = s.await;
    }
    info!("kamajid stopped");
    served
}
/// Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
