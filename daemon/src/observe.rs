//! What an operator (and a kubelet) watches kamajid through, on a plain-HTTP port apart from
//! the TLS API (`--metrics-listen`; loopback by default, so nothing is exposed unless asked):
//!
//! - `GET /healthz`: 200 while the process serves at all (a liveness probe);
//! - `GET /readyz`: 200 when kamajid can do its work now: its state etcd answers within a
//!   second. 503 with the reason otherwise, so a Service stops sending it requests it would
//!   fail and a rollout waits for it;
//! - `GET /metrics`: [`crate::metrics`], OpenMetrics or Prometheus text as the scraper asks.
//!
//! The API port also answers `grpc.health.v1.Health` (see [`health_reporter`]) with the same
//! readiness, for gRPC-aware load balancers and `grpc_health_probe`.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::{DatastoreFigures, Metrics};
use crate::store::Store;

/// What the probes and the scrape read.
#[derive(Clone)]
pub struct Observed {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub leading: watch::Receiver<bool>,
}

/// How long the state etcd may take to answer a readiness check.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(o): State<Observed>) -> (StatusCode, String) {
    match ready(&o.store).await {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// Whether kamajid can work now, and why not.
async fn ready(store: &Store) -> Result<(), String> {
    match tokio::time::timeout(READY_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the state etcd does not answer: {e}")),
        Err(_) => Err(format!(
            "the state etcd did not answer within {READY_TIMEOUT:?}"
        )),
    }
}

/// The datastores as a scrape shows them; none when kamajid's records cannot be read (the
/// scrape still answers, with the events and `kamaji_leader`).
async fn datastores(store: &Store) -> Vec<DatastoreFigures> {
    let read = async {
        let statuses = store.datastore_statuses().await?;
        let candidacies = store.candidacies().await?;
        Ok::<_, crate::store::StoreError>(
            candidacies
                .into_iter()
                .map(|c| {
                    let alarms = statuses
                        .iter()
                        .find(|(n, _)| n.as_str() == c.candidate.name.as_str())
                        .map_or(0, |(_, s)| s.alarms.len() as i64);
                    DatastoreFigures {
                        healthy: c.candidate.ready,
                        alarms,
                        candidate: c.candidate,
                    }
                })
                .collect(),
        )
    };
    match tokio::time::timeout(READY_TIMEOUT, read).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading datastores for a scrape");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!("reading datastores for a scrape timed out");
            Vec::new()
        }
    }
}

async fn metrics(State(o): State<Observed>, headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = crate::metrics::wants_openmetrics(
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    );
    let leading = *o.leading.borrow();
    let body = o.metrics.render(
        openmetrics,
        leading,
        &datastores(&o.store).await,
        kamaji_core::lifecycle::now_unix(),
    );
    let ty = if openmetrics {
        crate::metrics::OPENMETRICS
    } else {
        crate::metrics::PROMETHEUS_TEXT
    };
    ([(header::CONTENT_TYPE, ty)], body)
}

/// The gRPC health service, kept in step with readiness every few seconds: `""` (the server
/// as a whole) and each API service answer SERVING while the state etcd answers.
pub fn health_reporter(
    store: Store,
    services: &'static [&'static str],
    mut shutdown: watch::Receiver<bool>,
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        loop {
            let status = match ready(&store).await {
                Ok(()) => tonic_health::ServingStatus::Serving,
                Err(_) => tonic_health::ServingStatus::NotServing,
            };
            for s in std::iter::once("").chain(services.iter().copied()) {
                reporter.set_service_status(s, status).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
    service
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the probes on `listener` until `shutdown` flips.
pub async fn serve(listener: TcpListener, observed: Observed, mut shutdown: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(observed);
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
