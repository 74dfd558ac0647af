//! Keeping a shard healthy, against real etcd: compaction on schedule keeps the history a
//! tenant's watch can resume from and drops the rest, defragmentation returns free pages to the
//! file system, and a shard that raised `NOSPACE` is recovered (compacted, defragmented,
//! disarmed) and takes writes again.

use std::time::Duration;

use etcd_client::{Client, GetOptions, WatchOptions};
use kamaji_core::datastore::AdminCredentials;
use kamaji_core::shard::{Policy, Upkeep};
use kamaji_testkit::devenv::{DevPki, EtcdProcess, EtcdSecurity};
use kamajid::datastore::upkeep::{round, ShardAdmin};
use kamajid::etcd::{connect, error_chain, EtcdTls};

async fn root(etcd: &EtcdProcess, pki: &DevPki) -> Client {
    let tls = EtcdTls {
        ca_pem: Some(pki.ca.cert.clone()),
        identity: Some((pki.root.cert.clone(), pki.root.key.clone())),
    };
    connect(
        std::slice::from_ref(&etcd.endpoint),
        &tls,
        Duration::from_secs(10),
    )
    .await
    .unwrap()
}

fn admin(etcd: &EtcdProcess, pki: &DevPki) -> ShardAdmin {
    ShardAdmin::new(
        AdminCredentials {
            endpoints: vec![etcd.endpoint.clone()],
            ca_certificate: pki.ca.cert.clone(),
            client_certificate: pki.root.cert.clone(),
            client_key: pki.root.key.clone(),
        },
        Duration::from_secs(10),
    )
}

/// Rewrites a few keys of `/<tenant>/` with `size`-byte values `n` times: history, not data.
async fn churn(c: &mut Client, tenant: &str, n: usize, size: usize) -> i64 {
    let mut rev = 0;
    for i in 0..n {
        let v = vec![b'a' + (i % 26) as u8; size];
        rev = c
            .put(format!("/{tenant}/configmaps/default/c{}", i % 4), v, None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
    }
    rev
}

async fn compacted_at(c: &mut Client, rev: i64) -> bool {
    match c
        .get(
            "/t/",
            Some(GetOptions::new().with_prefix().with_revision(rev)),
        )
        .await
    {
        Ok(_) => false,
        Err(e) => error_chain(&e).contains("compacted"),
    }
}

#[tokio::test]
async fn compaction_keeps_the_retention_and_defragmentation_returns_the_free_pages() {
    kamajid::server::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let etcd = EtcdProcess::start(dir.path(), "kept", &pki, EtcdSecurity::default())
        .await
        .unwrap();
    let mut c = root(&etcd, &pki).await;
    let shard = admin(&etcd, &pki);
    let policy = Policy {
        retention_seconds: 60,
        defrag_free_percent: 30,
        defrag_min_free_bytes: 1 << 20,
    };
    let quota = 2 << 30;
    let old = churn(&mut c, "t", 200, 64 << 10).await;

    // First round: a mark, nothing compacted.
    let r = round(&shard, &Upkeep::default(), quota, &policy, 1000, async {
        false
    })
    .await
    .unwrap();
    assert_eq!(r.upkeep.compacted_revision, 0);
    assert_eq!(r.upkeep.mark_time, 1000);
    let mark = r.upkeep.mark_revision;
    assert!(mark >= old);
    // A watch from before the mark, as a tenant apiserver resuming would open, still works.
    let newer = churn(&mut c, "t", 200, 64 << 10).await;
    assert!(!compacted_at(&mut c, old).await);

    // Before the retention has passed: still nothing compacted.
    let r = round(&shard, &r.upkeep, quota, &policy, 1059, async { false })
        .await
        .unwrap();
    assert_eq!(r.upkeep.compacted_revision, 0);

    // Retention passed: compacted to the mark, not further; history after it kept.
    let size_before = r.observed.largest().db_size;
    let r = round(&shard, &r.upkeep, quota, &policy, 1060, async { false })
        .await
        .unwrap();
    assert_eq!(r.upkeep.compacted_revision, mark);
    assert_eq!(r.upkeep.compacted_time, 1060);
    assert!(
        compacted_at(&mut c, mark - 1).await,
        "history before the mark dropped"
    );
    assert!(
        !compacted_at(&mut c, mark).await,
        "history from the mark kept"
    );
    let mut w = c
        .watch(
            "/t/",
            Some(WatchOptions::new().with_prefix().with_start_revision(newer)),
        )
        .await
        .unwrap();
    let first = loop {
        let m = w.message().await.unwrap().unwrap();
        if m.canceled() || !m.events().is_empty() {
            break m;
        }
    };
    assert!(!first.canceled(), "a watch resumes after the mark");
    assert_eq!(first.events()[0].kv().unwrap().mod_revision(), newer);
    assert!(r.upkeep.mark_revision >= newer);

    // The history compacted away left free pages: defragmented, the file shrinks.
    assert!(r.upkeep.defragmented_time == 1060, "{:?}", r.upkeep);
    let after = r.observed.largest();
    // What was compacted away (200 values of 64 KiB) leaves the file; what is kept stays.
    assert!(
        size_before - after.db_size > 4 << 20,
        "file {size_before} -> {} bytes",
        after.db_size
    );
    assert!(after.db_size - after.db_size_in_use < 1 << 20, "{after:?}");
    assert!(r.trouble.is_none());

    // Not while a move holds a tenant on it: free pages wait.
    churn(&mut c, "t", 200, 64 << 10).await;
    let r = round(&shard, &r.upkeep, quota, &policy, 1200, async { true })
        .await
        .unwrap();
    assert_eq!(
        r.upkeep.compacted_time, 1200,
        "compaction goes on while busy"
    );
    assert_eq!(
        r.upkeep.defragmented_time, 1060,
        "no defragmentation while busy"
    );
}

#[tokio::test]
async fn a_shard_that_raised_nospace_is_recovered_and_takes_writes_again() {
    kamajid::server::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let quota: u64 = 32 << 20;
    let etcd = EtcdProcess::start(dir.path(), "full", &pki, EtcdSecurity::with_quota(quota))
        .await
        .unwrap();
    let mut c = root(&etcd, &pki).await;
    c.put("/quiet/configmaps/default/keep", "neighbour data", None)
        .await
        .unwrap();
    let shard = admin(&etcd, &pki);
    let policy = Policy::default();
    let up = round(
        &shard,
        &Upkeep::default(),
        quota as i64,
        &policy,
        1000,
        async { false },
    )
    .await
    .unwrap()
    .upkeep;

    // One tenant rewrites one large object until etcd refuses: history fills the shard.
    let mut refused = None;
    for i in 0..2000usize {
        let v = vec![b'a' + (i % 26) as u8; 512 << 10];
        if let Err(e) = c.put("/noisy/configmaps/default/big", v, None).await {
            refused = Some(error_chain(&e));
            break;
        }
    }
    let refused = refused.expect("etcd never refused a write");
    assert!(refused.contains("database space exceeded"), "{refused}");
    let e = c
        .put("/quiet/configmaps/default/new", "x", None)
        .await
        .unwrap_err();
    assert!(
        error_chain(&e).contains("space exceeded"),
        "the neighbour cannot write either"
    );

    let r = round(&shard, &up, quota as i64, &policy, 1015, async { false })
        .await
        .unwrap();
    assert!(r.trouble.is_none(), "{:?}", r.trouble);
    assert!(r.observed.alarms.is_empty(), "{:?}", r.observed.alarms);
    assert!(
        r.upkeep.last_event.contains("recovered from NOSPACE"),
        "{}",
        r.upkeep.last_event
    );
    assert!(
        r.observed.largest().db_size < quota as i64 / 2,
        "{:?}",
        r.observed.largest()
    );
    c.put("/quiet/configmaps/default/new", "x", None)
        .await
        .expect("the neighbour writes again");
    let kept = c.get("/quiet/configmaps/default/keep", None).await.unwrap();
    assert_eq!(kept.kvs()[0].value(), b"neighbour data");
    let big = c.get("/noisy/configmaps/default/big", None).await.unwrap();
    assert_eq!(big.kvs().len(), 1, "the data is kept; only history went");

    // Live data that does not fit cannot be recovered by upkeep: said so, alarm kept.
    let mut i = 0;
    loop {
        let v = vec![b'z'; 512 << 10];
        if c.put(format!("/noisy/configmaps/default/d{i}"), v, None)
            .await
            .is_err()
        {
            break;
        }
        i += 1;
        assert!(i < 500, "never full");
    }
    let r = round(&shard, &r.upkeep, quota as i64, &policy, 1030, async {
        false
    })
    .await
    .unwrap();
    let t = r.trouble.expect("a shard full of live data is trouble");
    assert!(t.contains("NOSPACE") && t.contains("drain"), "{t}");
    assert!(!r.observed.alarms.is_empty());
}
