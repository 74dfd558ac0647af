//! What an operator (and a kubelet) watches kamajid through, on a plain-HTTP port apart from
//! the TLS API (`--metrics-listen`; loopback by default, so nothing is exposed unless asked):
//!
//! - `GET /healthz`: 200 while the process serves at all (a liveness probe);
//! - `GET /readyz`: 200 when kamajid can do its work now: its state etcd answers within a
//!   second. 503 with the reason otherwise, so a Service stops sending it requests it would
//!   fail and a rollout waits for it.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::store::Store;

/// How long the state etcd may take to answer a readiness check.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(store): State<Store>) -> (StatusCode, String) {
    match tokio::time::timeout(READY_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok\n".into()),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the state etcd does not answer: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the state etcd did not answer within {READY_TIMEOUT:?}\n"),
        ),
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the probes on `listener` until `shutdown` flips.
pub async fn serve(listener: TcpListener, store: Store, mut shutdown: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(store);
    let stop = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::warn!(error = %e, "serving health probes");
    }
}
