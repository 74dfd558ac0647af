//! The write capacity of a three-member etcd cluster, the shape a production shard has, beside
//! a one-member one measured the same way: three members on this one machine (one disk, two
//! cores) replicate and fsync every commit three times on the same hardware, a floor for
//! members on three machines.

use std::time::{Duration, Instant};

use kamaji_testkit::devenv::{etcd_bin, free_port};

/// Kills the members when the measurement ends, however it ends.
struct Members(Vec<tokio::process::Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.start_kill();
        }
    }
}

/// Raw txn/s of 2 KiB puts by `writers` concurrent writers against a fresh cluster of
/// `size` members (plain HTTP on loopback, no auth); `None` when it does not form.
pub(crate) async fn raw_txn_per_s(size: usize, writers: usize) -> Option<f64> {
    let dir = tempfile::tempdir().ok()?;
    let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect();
    let mut members = Members(Vec::new());
    for (i, (client, peer)) in ports.iter().enumerate() {
        let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).ok()?;
        let child = tokio::process::Command::new(etcd_bin())
            .arg(format!("--name=m{i}"))
            .arg(format!(
                "--data-dir={}",
                dir.path().join(format!("m{i}")).display()
            ))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster={}", initial.join(",")))
            .arg("--initial-cluster-state=new")
            .arg("--log-level=warn")
            .stdout(log.try_clone().ok()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        members.0.push(child);
    }
    let endpoints: Vec<String> = ports
        .iter()
        .map(|(c, _)| format!("http://127.0.0.1:{c}"))
        .collect();
    let formed = Instant::now();
    let client = loop {
        if let Ok(mut c) = etcd_client::Client::connect(&endpoints, None).await {
            if c.put("/formed", "1", None).await.is_ok() {
                break c;
            }
        }
        if formed.elapsed() > Duration::from_secs(30) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rate = puts_per_second(&client, writers).await;
    drop(members);
    Some(rate)
}

/// Transactions of one 2 KiB put each that `writers` concurrent writers commit per second over
/// 3 s (a writer whose put fails stops).
pub(crate) async fn puts_per_second(client: &etcd_client::Client, writers: usize) -> f64 {
    let run = Duration::from_secs(3);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let mut c = client.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                let value = vec![b'x'; 2048];
                while start.elapsed() < run {
                    let txn = etcd_client::Txn::new().and_then([etcd_client::TxnOp::put(
                        format!("/raw/{w}/{n}"),
                        value.clone(),
                        None,
                    )]);
                    if c.txn(txn).await.is_err() {
                        break;
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    total as f64 / start.elapsed().as_secs_f64()
}
