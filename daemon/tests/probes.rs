//! kamajid's probes, as a kubelet reads them: alive while it serves, ready only while its state
//! etcd answers.

mod support;

use std::time::{Duration, Instant};

use support::Env;

/// The status code of a plain-HTTP GET of `path`.
async fn get(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn ready_only_while_the_state_etcd_answers() {
    let mut env = Env::start().await;
    let start = Instant::now();
    while get(env.metrics, "/readyz").await != Some(200) {
        assert!(start.elapsed() < Duration::from_secs(20), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(env.metrics, "/healthz").await, Some(200));
    env.state.stop().await;
    let start = Instant::now();
    while get(env.metrics, "/readyz").await != Some(503) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still ready with its state etcd gone"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        get(env.metrics, "/healthz").await,
        Some(200),
        "alive all the same"
    );
}
