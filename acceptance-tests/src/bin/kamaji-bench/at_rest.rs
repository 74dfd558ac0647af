//! kamajid at rest: with N Ready tenants and nothing changing, what kamajid itself costs (CPU)
//! and what it asks of the state etcd, the shards, the admin cluster and the tenants'
//! apiservers (here the Kubernetes API double, which counts what it serves).

use std::time::Duration;

use acceptance_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proc::cpu_seconds;

/// gRPC requests an etcd has started, from its plain-HTTP metrics.
async fn etcd_requests(metrics_url: &str) -> f64 {
    let Some(rest) = metrics_url.strip_prefix("http://") else {
        return 0.0;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut conn) = tokio::net::TcpStream::connect(host).await else {
        return 0.0;
    };
    let req = format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    if conn.write_all(req.as_bytes()).await.is_err() {
        return 0.0;
    }
    let mut body = String::new();
    let _ = conn.read_to_string(&mut body).await;
    body.lines()
        .filter(|l| l.starts_with("grpc_server_started_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) async fn bench_at_rest(h: &Harness, shards: &[&str], tenants: usize, window: Duration) {
    let pid = h.kamajid_pid();
    let count = |urls: Vec<String>| async move {
        let mut n = 0.0;
        for u in urls {
            n += etcd_requests(&u).await;
        }
        n
    };
    let shard_urls: Vec<String> = shards.iter().map(|s| s.to_string()).collect();
    let state_url = vec![h.state_metrics_url().to_owned()];
    let (cpu0, state0, shards0, kube0) = (
        cpu_seconds(pid),
        count(state_url.clone()).await,
        count(shard_urls.clone()).await,
        kube_double::requests_served(),
    );
    tokio::time::sleep(window).await;
    let secs = window.as_secs_f64();
    let cpu = (cpu_seconds(pid) - cpu0) / secs * 100.0;
    let state = (count(state_url).await - state0) / secs;
    let shard = (count(shard_urls).await - shards0) / secs;
    let kube = kube_double::requests_served();
    println!(
        "kamajid at rest with {tenants} Ready tenants, over {} s: {cpu:.1} % of one core  [target <= 5 % at 5000]; requests/s: state etcd {state:.1}, datastore shards {shard:.1}, admin cluster {:.1}, tenant apiservers {:.1}",
        window.as_secs(),
        (kube.0 - kube0.0) as f64 / secs,
        (kube.1 - kube0.1) as f64 / secs,
    );
}

/// Adds tenants `t-<from>` .. `t-<to - 1>`, `concurrency` creates at a time, and waits until
/// `to` tenants are Ready (for the at-rest figure at a larger fleet).
pub(crate) async fn grow(h: &Harness, from: usize, to: usize, concurrency: usize) {
    use kamaji_proto::v1;
    use std::time::Instant;
    let t = h.tenants().await;
    let start = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut creates = Vec::new();
    for i in from..to {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let mut c = t.clone();
        creates.push(tokio::spawn(async move {
            let r = c
                .create_tenant_cluster(v1::CreateTenantClusterRequest {
                    name: format!("t-{i:05}"),
                    spec: Some(crate::tenant_spec()),
                    validate_only: false,
                    planned_datastores: Vec::new(),
                })
                .await;
            drop(permit);
            r.unwrap_or_else(|e| panic!("create t-{i:05}: {e}"));
        }));
    }
    for c in creates {
        c.await.expect("create task");
    }
    let mut t = t;
    loop {
        let ready = list_all(&mut t)
            .await
            .iter()
            .filter(|tc| {
                tc.status
                    .as_ref()
                    .is_some_and(|s| s.phase == v1::TenantClusterPhase::Ready as i32)
            })
            .count();
        if ready >= to {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1200),
            "only {ready} of {to} tenants Ready"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "  {} more tenants Ready in {:.1} s ({to} in all)",
        to - from,
        start.elapsed().as_secs_f64()
    );
}

/// Every tenant cluster, a page of 500 at a time (past about 4000 tenants one answer exceeds
/// gRPC's default 4 MiB).
pub(crate) async fn list_all(
    t: &mut kamaji_proto::v1::tenant_clusters_client::TenantClustersClient<
        tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
    >,
) -> Vec<kamaji_proto::v1::TenantCluster> {
    let mut req = kamaji_proto::v1::ListTenantClustersRequest {
        page_size: 500,
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let resp = t
            .list_tenant_clusters(req.clone())
            .await
            .expect("list")
            .into_inner();
        out.extend(resp.tenant_clusters);
        if resp.next_page_token.is_empty() {
            return out;
        }
        req.page_token = resp.next_page_token;
    }
}
