//! The hard wall, against real etcd: the watch of a shard makes a tenant's role read-only the
//! moment its writes pass its quota or budget (its neighbour untouched), leaves it the keys of
//! kamajid's storage policy, locks it entirely when it keeps writing through those, and a move's
//! hold and the walls never undo each other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::Client;
use kamaji_core::datastore::DatastoreRecord;
use kamaji_core::ids::{DatastoreName, TenantId};
use kamaji_core::kek::Kek;
use kamaji_core::lifecycle::ports::Isolation;
use kamaji_core::limits::{Limits, Wall};
use kamaji_core::pki::{issue, Pem};
use kamaji_proto::v1;
use kamaji_testkit::devenv::{DevPki, EtcdProcess, EtcdSecurity};
use kamajid::datastore::isolation::EtcdIsolation;
use kamajid::datastore::transfer::policy_keys;
use kamajid::datastore::usage::UsageTracker;
use kamajid::etcd::{connect, error_chain, EtcdTls};
use kamajid::wire;
use tokio::sync::{watch, Notify};

async fn client_as(etcd: &EtcdProcess, pki: &DevPki, cert: &Pem) -> Client {
    let tls = EtcdTls {
        ca_pem: Some(pki.ca.cert.clone()),
        identity: Some((cert.cert.clone(), cert.key.clone())),
    };
    connect(
        std::slice::from_ref(&etcd.endpoint),
        &tls,
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

fn record(name: &str, etcd: &EtcdProcess, pki: &DevPki, kek: &Kek) -> DatastoreRecord {
    wire::seal_datastore(
        &DatastoreName::parse(name).unwrap(),
        &v1::DatastoreSpec {
            endpoints: vec![etcd.endpoint.clone()],
            ca_certificate: pki.ca.cert.clone(),
            client_certificate: pki.root.cert.clone(),
            client_key: pki.root.key.clone(),
            client_ca_certificate: pki.ca.cert.clone(),
            client_ca_key: pki.ca.key.clone(),
            quota_bytes: 1 << 30,
            schedulable: true,
            ..Default::default()
        },
        kek,
        1,
        1,
    )
}

/// A put, tried again when it raced a change of the tenant's role (etcd answers "revision of
/// auth store is old" to a request checked against the permissions before the change).
async fn put(c: &mut Client, key: &str, value: Vec<u8>) -> Result<(), String> {
    for _ in 0..5 {
        match c.put(key, value.clone(), None).await {
            Ok(_) => return Ok(()),
            Err(e) if error_chain(&e).contains("auth store is old") => continue,
            Err(e) => return Err(error_chain(&e)),
        }
    }
    Err("the auth store kept changing".into())
}

async fn refused(c: &mut Client, key: &str) -> bool {
    match put(c, key, b"x".to_vec()).await {
        Ok(()) => false,
        Err(e) => e.contains("permission denied"),
    }
}

/// Waits until `f` holds, for at most 10 s.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_watch_walls_a_tenant_off_the_moment_it_passes_a_limit() {
    kamajid::server::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let etcd = EtcdProcess::start(dir.path(), "walled", &pki, EtcdSecurity::default())
        .await
        .unwrap();
    let kek = Kek::from_bytes(&[7; 32]);
    let ds = record("walled", &etcd, &pki, &kek);
    let name = ds.name.clone();
    let wake = Arc::new(Notify::new());
    let (_lead, leading) = watch::channel(true);
    let tracker = UsageTracker::enforcing(
        kek.clone(),
        Duration::from_secs(5),
        600,
        Some(wake.clone()),
        Some(leading),
    );
    tracker.track(std::slice::from_ref(&ds));
    let isolation = EtcdIsolation::new(
        kek,
        Duration::from_secs(5),
        tracker.clone(),
        Default::default(),
    );
    let (noisy, quiet) = (
        TenantId::parse("noisy").unwrap(),
        TenantId::parse("quiet").unwrap(),
    );
    for id in [&noisy, &quiet] {
        isolation.ensure(&ds, id).await.unwrap();
    }
    let mut n = client_as(&etcd, &pki, &issue(&pki.ca, "noisy", &[]).unwrap()).await;
    let mut q = client_as(&etcd, &pki, &issue(&pki.ca, "quiet", &[]).unwrap()).await;
    until("measured", || tracker.metered(&name, &noisy).is_some()).await;

    // 1 MiB quota, a generous budget: a growing tenant is walled at the write that passes it.
    let quota = 1 << 20;
    let limits = Limits::new(quota, 64 << 20, Some(1 << 30));
    isolation.register(&name, &noisy, limits, false, Default::default());
    isolation.register(&name, &quiet, limits, false, Default::default());
    let woken = wake.notified();
    let mut accepted = 0i64;
    let big = vec![b'n'; 100 << 10];
    for i in 0..50 {
        match put(
            &mut n,
            &format!("/noisy/configmaps/default/c{i}"),
            big.clone(),
        )
        .await
        {
            Ok(()) => accepted += big.len() as i64,
            Err(e) => {
                assert!(e.contains("permission denied"), "{e}");
                break;
            }
        }
    }
    let over = accepted - quota;
    println!(
        "noisy wrote {accepted} bytes before the wall: {over} past a quota of {quota} ({:.1} %)",
        over as f64 * 100.0 / quota as f64
    );
    assert!(accepted < 50 * big.len() as i64, "never walled");
    tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .expect("the lifecycle is woken");
    let m = tracker.metered(&name, &noisy).unwrap();
    assert_eq!(m.guard.wall, Wall::Up);
    // Walled: reads work, writes do not, but kamajid's policy keys can still be written through
    // the tenant's own apiserver; the neighbour writes on.
    assert!(n.get("/noisy/configmaps/default/c0", None).await.is_ok());
    assert!(refused(&mut n, "/noisy/configmaps/default/more").await);
    let [policy, binding] = policy_keys(&noisy);
    put(&mut n, &policy, b"policy".to_vec())
        .await
        .expect("the policy key stays writable");
    put(&mut n, &binding, b"binding".to_vec())
        .await
        .expect("the binding key stays writable");
    assert!(!refused(&mut q, "/quiet/configmaps/default/c").await);

    // The lifecycle lowers it once the soft wall holds: the role lets writes (deletes) through
    // again, the soft wall inside the tenant refusing the rest.
    isolation
        .set_walls(&name, &noisy, Wall::Down, true)
        .await
        .unwrap();
    assert!(!refused(&mut n, "/noisy/configmaps/default/small").await);
    // Touching the policy's keys unproves the soft wall: up again at once, being past the quota.
    put(&mut n, &policy, b"changed behind kamajid's back".to_vec())
        .await
        .unwrap();
    until("walled again", || {
        tracker
            .metered(&name, &noisy)
            .is_some_and(|m| m.guard.wall == Wall::Up && !m.guard.soft)
    })
    .await;
    assert!(refused(&mut n, "/noisy/configmaps/default/again").await);

    // A move's hold on top of the wall: read-only, policy keys too; the wall coming down does
    // not lift the hold, the hold coming off leaves the wall.
    isolation.hold_writes(&ds, &noisy, true).await.unwrap();
    assert!(
        refused(&mut n, policy.as_str()).await,
        "held: even the policy key"
    );
    isolation
        .set_walls(&name, &noisy, Wall::Down, false)
        .await
        .unwrap();
    assert!(
        refused(&mut n, "/noisy/configmaps/default/held").await,
        "the hold stays"
    );
    isolation
        .set_walls(&name, &noisy, Wall::Up, false)
        .await
        .unwrap();
    isolation.hold_writes(&ds, &noisy, false).await.unwrap();
    assert!(
        refused(&mut n, "/noisy/configmaps/default/walled").await,
        "the wall stays"
    );
    assert!(!refused(&mut n, policy.as_str()).await);

    // Writing on and on through the policy's keys (a small budget now): locked entirely.
    let tight = Limits::new(1 << 30, 64 << 20, Some(4096));
    isolation.register(&name, &noisy, tight, false, Default::default());
    let mut locked = false;
    for i in 0..200 {
        if put(&mut n, &policy, vec![b'p'; 20 << 10]).await.is_err() {
            locked = true;
            println!("locked after {i} rewrites of the policy key");
            break;
        }
    }
    assert!(locked, "never locked");
    assert_eq!(
        tracker.metered(&name, &noisy).unwrap().guard.wall,
        Wall::Locked
    );
    assert!(
        !refused(&mut q, "/quiet/configmaps/default/d").await,
        "the neighbour writes on"
    );

    // Back within limits: down.
    isolation
        .set_walls(&name, &noisy, Wall::Down, false)
        .await
        .unwrap();
    assert!(!refused(&mut n, "/noisy/configmaps/default/free").await);
}
