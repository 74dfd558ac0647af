//! Wiring: load secrets and settings, connect to the state etcd, start the leader campaign and
//! the health loop, and serve the API until shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kamaji_proto::v1::datastores_server::DatastoresServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tracing::info;

use crate::api::auth::{Tokens, TokensError};
use crate::api::datastores::DatastoreApi;
use crate::config::{ServeConfig, StateEtcdConfig};
use crate::datastore::{health, probe::EtcdProber};
use crate::etcd::{connect, error_chain, EtcdTls};
use crate::kek::{Kek, KekError};
use crate::leader;
use crate::store::{Store, ROOT};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Kek(#[from] KekError),
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
    let mut client = connect(&cfg.endpoints, &tls, std::time::Duration::from_secs(5))
        .await
        .map_err(|e| err(error_chain(&e)))?;
    client
        .get(ROOT, None)
        .await
        .map_err(|e| err(error_chain(&e)))?;
    Ok(Store::new(client))
}

/// Runs kamajid until `shutdown` turns true.
pub async fn serve(
    cfg: ServeConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    install_crypto();
    let tokens = Tokens::load(&cfg.tokens_file)?;
    let kek = Kek::load(&cfg.kek_file)?;
    let identity = Identity::from_pem(read(&cfg.tls_cert_file)?, read(&cfg.tls_key_file)?);
    let store = connect_state(&cfg.state_etcd).await?;
    let prober = Arc::new(EtcdProber {
        timeout: cfg.probe_timeout(),
    });

    let (leading_tx, leading_rx) = watch::channel(false);
    let id = format!("{}-{}", std::process::id(), crate::datastore::now_unix());
    let campaign = tokio::spawn(leader::run(
        store.client(),
        id,
        cfg.leader_lease_seconds,
        leading_tx,
        shutdown.clone(),
    ));
    let health = tokio::spawn(health::run(
        store.clone(),
        kek.clone(),
        prober.clone(),
        cfg.health_interval(),
        leading_rx,
        shutdown.clone(),
    ));

    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: cfg.listen,
        source,
    })?;
    info!(%addr, "kamajid API listening (TLS, bearer tokens)");
    let datastores = DatastoresServer::with_interceptor(
        DatastoreApi { store, kek, prober },
        tokens.interceptor(),
    );
    let served = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(identity))
        .map_err(|e| ServeError::Transport(error_chain(&e)))?
        .add_service(datastores)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
        .map_err(|e| ServeError::Transport(error_chain(&e)));
    let _ = tokio::join!(campaign, health);
    info!("kamajid stopped");
    served
}
