//! The API's calls, counted by method and code.

use std::sync::Arc;
use std::time::Instant;

use super::Metrics;

/// Wraps the API so every call is counted ([`Metrics::call`]).
#[derive(Clone)]
pub struct CallsLayer(pub Arc<Metrics>);

impl<S> tower_layer::Layer<S> for CallsLayer {
    type Service = Calls<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Calls {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The service [`CallsLayer`] makes.
#[derive(Clone)]
pub struct Calls<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for Calls<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            // Errors of unary calls come in the headers (tonic answers them "trailers-only");
            // a reply without grpc-status there carries OK in its trailers.
            let code = match &res {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from),
                Err(_) => tonic::Code::Unknown,
            };
            metrics.call(&method, code, started.elapsed());
            res
        })
    }
}
