//! 6b. Per-tenant backups: for tenants of 1k, 10k and 100k objects (1 KiB values, as small
//! ConfigMaps), the time to back one up from a real etcd to a directory store, the archive's
//! size, the time to restore it under another tenant's prefix on a second etcd, and how much the
//! resident memory of the process running kamajid's backup code grows during the 100k backup
//! (pages are streamed: it should not grow with the tenant).

use std::time::{Duration, Instant};

use acceptance_tests::*;
use kamaji_core::backup::archive::Secrets;
use kamaji_core::ids::{TenantId, TenantName};
use kamaji_core::tenant::{TenantRecord, WireSpec};
use kamajid::backup::{store, Backups};

use crate::proc::rss_kib;

async fn root(h: &Harness, etcd: &EtcdProcess) -> etcd_client::Client {
    let tls = kamajid::etcd::EtcdTls {
        ca_pem: Some(h.pki.ca.cert.clone()),
        identity: Some((h.pki.root.cert.clone(), h.pki.root.key.clone())),
    };
    kamajid::etcd::connect(
        std::slice::from_ref(&etcd.endpoint),
        &tls,
        Duration::from_secs(10),
    )
    .await
    .expect("etcd")
}

pub(crate) async fn bench_backup(h: &Harness) {
    let (src, dst) = (
        h.etcd("backup-src", EtcdSecurity::with_quota(8 << 30))
            .await,
        h.etcd("backup-dst", EtcdSecurity::with_quota(8 << 30))
            .await,
    );
    let (cs, cd) = (root(h, &src).await, root(h, &dst).await);
    let records = kamajid::store::Store::new(h.state_etcd().await);
    let dir = h.dir.path().join("bench-backups");
    let backups = Backups::new(
        store::open(dir.to_str().expect("path")).expect("store"),
        records,
        kamaji_core::kek::Kek::from_bytes(&[9; 32]),
    );
    let me = std::process::id();
    let mut per_key = Vec::new();
    for n in [1_000usize, 10_000, 100_000] {
        let name = TenantName::parse(&format!("bench-{n}")).expect("name");
        let mut rec = TenantRecord::new(name, WireSpec(String::new()), 64 << 20, 0);
        rec.current_version = Some("1.37.2".into());
        let prefix = kamaji_core::etcd_keys::prefix(&rec.uid);
        put_many_under(&cs, &prefix, n, 1024, 64).await;
        let before = rss_kib(me);
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
        let sampling = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(rss_kib(me), std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let start = Instant::now();
        let taken = backups
            .take(
                &rec,
                &Secrets::default(),
                &cs,
                Default::default(),
                false,
                1_796_000_000,
            )
            .await
            .expect("backup");
        let took = start.elapsed();
        sampling.abort();
        let grew = peak
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(before);
        let target = TenantId::parse(&format!("restored-{n}")).expect("id");
        let start = Instant::now();
        let restored = backups
            .restore(&taken.id, &cd, &target)
            .await
            .expect("restore");
        let restore_took = start.elapsed();
        assert_eq!(restored.keys, n as i64);
        println!(
            "Backup of a tenant of {n:>6} objects: {:>6.2} s, archive {:>6.1} MiB ({:.2} of the data); \
             restore into a new prefix on another etcd {:>6.2} s; RSS grew {:>5.1} MiB during the backup",
            took.as_secs_f64(),
            taken.size_bytes as f64 / (1 << 20) as f64,
            taken.size_bytes as f64 / taken.bytes as f64,
            restore_took.as_secs_f64(),
            grew as f64 / 1024.0,
        );
        per_key.push((n, took.as_secs_f64() / n as f64));
    }
    let (small, large) = (per_key[0].1, per_key[2].1);
    println!(
        "Backup time per object, 100k over 1k objects: {:.2} (1: linear in the tenant's size)",
        large / small
    );
}

/// Puts `n` keys of `value_len` bytes under `prefix` (`configmaps/default/c<i>`), `writers` at a
/// time.
async fn put_many_under(
    c: &etcd_client::Client,
    prefix: &str,
    n: usize,
    value_len: usize,
    writers: usize,
) {
    use futures::StreamExt;
    let value = vec![b'v'; value_len];
    futures::stream::iter(0..n)
        .map(|i| {
            let (mut c, value) = (c.clone(), value.clone());
            async move {
                c.put(format!("{prefix}configmaps/default/c{i:06}"), value, None)
                    .await
                    .expect("put");
            }
        })
        .buffer_unordered(writers)
        .collect::<Vec<_>>()
        .await;
}
