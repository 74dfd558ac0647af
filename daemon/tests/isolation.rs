//! Tenant isolation in a shared etcd, against a real etcd with TLS, client-certificate auth and
//! auth enabled: each tenant's certificate reaches its own prefix and nothing else.

use std::time::Duration;

use etcd_client::{Client, GetOptions};
use kamaji_core::datastore::DatastoreRecord;
use kamaji_core::etcd_keys::prefix;
use kamaji_core::ids::{DatastoreName, TenantId};
use kamaji_core::kek::Kek;
use kamaji_core::lifecycle::ports::Isolation;
use kamaji_core::pki::{issue, Pem};
use kamaji_core::usage::StorageUsage;
use kamaji_proto::v1;
use kamaji_testkit::devenv::{DevPki, EtcdProcess, EtcdSecurity};
use kamajid::datastore::isolation::EtcdIsolation;
use kamajid::datastore::usage::UsageTracker;
use kamajid::etcd::{connect, error_chain, EtcdTls};
use kamajid::wire;

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

/// The datastore as kamajid records it: the root credentials sealed with `kek`.
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

async fn denied<T>(r: Result<T, etcd_client::Error>) -> bool {
    matches!(r, Err(e) if error_chain(&e).contains("permission denied"))
}

#[tokio::test]
async fn a_tenant_reaches_its_prefix_and_nothing_else_and_removal_is_exact() {
    kamajid::server::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let etcd = EtcdProcess::start(dir.path(), "shared", &pki, EtcdSecurity::default())
        .await
        .unwrap();
    let mut admin = client_as(&etcd, &pki, &pki.root).await;
    admin
        .put("/kamajid/v1/datastores/x", "secret record", None)
        .await
        .unwrap();

    // The datastore as kamajid records it: admin credentials sealed with the KEK.
    let kek = Kek::from_bytes(&[5; 32]);
    let ds = record("shared", &etcd, &pki, &kek);
    let isolation = EtcdIsolation::new(
        kek.clone(),
        Duration::from_secs(5),
        UsageTracker::new(kek, Duration::from_secs(5)),
        Default::default(),
    );
    let (team_id, team_a_id) = (
        TenantId::parse("team").unwrap(),
        TenantId::parse("team-a").unwrap(),
    );
    for id in [&team_id, &team_a_id] {
        isolation.ensure(&ds, id).await.unwrap();
        isolation.ensure(&ds, id).await.unwrap(); // idempotent: a resumed lifecycle runs it again
    }
    let team_cert = issue(&pki.ca, "team", &[]).unwrap();
    let team_a_cert = issue(&pki.ca, "team-a", &[]).unwrap();
    let mut team = client_as(&etcd, &pki, &team_cert).await;
    let mut team_a = client_as(&etcd, &pki, &team_a_cert).await;

    team.put("/team/registry/pods/p1", "team data", None)
        .await
        .unwrap();
    team_a
        .put("/team-a/registry/pods/p1", "team-a data", None)
        .await
        .unwrap();
    let own = team
        .get("/team/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(own.kvs().len(), 1);

    // The neighbour whose name starts the same, the bare name without the slash, kamajid's own
    // records, and the whole keyspace are all out of reach.
    assert!(denied(team.get("/team-a/registry/pods/p1", None).await).await);
    assert!(denied(team.put("/team-a/registry/pods/evil", "x", None).await).await);
    assert!(
        denied(
            team.get("/team", Some(GetOptions::new().with_prefix()))
                .await
        )
        .await
    );
    assert!(denied(team.get("/kamajid/v1/datastores/x", None).await).await);
    assert!(denied(team.get("", Some(GetOptions::new().with_all_keys())).await).await);
    assert!(denied(team_a.get("/team/registry/pods/p1", None).await).await);
    assert!(
        denied(team.user_list().await).await,
        "a tenant can administer etcd"
    );

    // Leases (etcd CVE-2023-32082, fixed in 3.4.26 and 3.5.9): with its own certificate, team
    // can neither list the shard's leases, nor read which keys a neighbour's lease holds, nor
    // keep it alive, nor revoke it.
    let ours = team.lease_grant(3600, None).await.unwrap().id();
    team.put(
        "/team/events/default/e1",
        "event",
        Some(etcd_client::PutOptions::new().with_lease(ours)),
    )
    .await
    .unwrap();
    let theirs = team_a.lease_grant(3600, None).await.unwrap().id();
    team_a
        .put(
            "/team-a/events/default/e1",
            "event",
            Some(etcd_client::PutOptions::new().with_lease(theirs)),
        )
        .await
        .unwrap();
    assert!(denied(team.leases().await).await, "lease list");
    assert!(
        denied(
            team.lease_time_to_live(
                theirs,
                Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys())
            )
            .await
        )
        .await,
        "a neighbour's lease keys"
    );
    let keys_of_ours = team
        .lease_time_to_live(
            ours,
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .unwrap();
    assert_eq!(keys_of_ours.keys(), [b"/team/events/default/e1".to_vec()]);
    let renewed = match team.lease_keep_alive(theirs).await {
        Ok((mut keeper, mut stream)) => {
            let _ = keeper.keep_alive().await;
            stream.message().await
        }
        Err(e) => Err(e),
    };
    assert!(denied(renewed).await, "keeping a neighbour's lease alive");
    assert!(
        denied(team.lease_revoke(theirs).await).await,
        "revoking a neighbour's lease"
    );
    let still = admin.get("/team-a/events/default/e1", None).await.unwrap();
    assert_eq!(
        still.kvs()[0].lease(),
        theirs,
        "the neighbour's lease is untouched"
    );

    // Nor compact the shard (root only since etcd 3.6.9; before it, any user could, and
    // kamajid warns about such releases): kamajid's compaction is the only one.
    let rev = admin
        .get("x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    assert!(
        denied(team.compact(rev, None).await).await,
        "a tenant compacts the shard"
    );
    admin.compact(rev, None).await.expect("root compacts");

    // Removing team-a leaves team untouched and nothing of team-a behind.
    isolation.remove(&ds, &team_a_id).await.unwrap();
    isolation.remove(&ds, &team_a_id).await.unwrap(); // idempotent
    let left = admin
        .get(prefix(&team_a_id), Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(left.kvs().is_empty(), "team-a keys left behind");
    let users = admin.user_list().await.unwrap();
    assert!(
        !users.users().iter().any(|u| u == "team-a") && users.users().iter().any(|u| u == "team")
    );
    let roles = admin.role_list().await.unwrap();
    assert!(
        !roles.roles().iter().any(|r| r == "team-a") && roles.roles().iter().any(|r| r == "team")
    );
    let kept = admin.get("/team/registry/pods/p1", None).await.unwrap();
    assert_eq!(kept.kvs()[0].value(), b"team data");
    assert_eq!(
        admin
            .get("/kamajid/v1/datastores/x", None)
            .await
            .unwrap()
            .kvs()
            .len(),
        1
    );
    // team-a's certificate no longer reaches anything.
    assert!(team_a.get("/team-a/registry/pods/p1", None).await.is_err());
}

/// What every tenant keeps, counted by reading the whole shard as root: what a user would
/// compare kamajid's figures with.
async fn scanned(admin: &mut Client, id: &str) -> StorageUsage {
    let r = admin
        .get(format!("/{id}/"), Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    StorageUsage {
        bytes: r
            .kvs()
            .iter()
            .map(|kv| (kv.key().len() + kv.value().len()) as i64)
            .sum(),
        keys: r.kvs().len() as i64,
    }
}

#[tokio::test]
async fn usage_follows_every_put_and_delete_and_survives_a_compaction() {
    kamajid::server::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let etcd = EtcdProcess::start(dir.path(), "measured", &pki, EtcdSecurity::default())
        .await
        .unwrap();
    let mut admin = client_as(&etcd, &pki, &pki.root).await;
    // Written before kamajid looks: found by the first scan (more than one page of it).
    for i in 0..1200 {
        admin
            .put(
                format!("/team/configmaps/default/c{i}"),
                "x".repeat(100),
                None,
            )
            .await
            .unwrap();
    }
    admin.put("/team-a/secrets/s", "y", None).await.unwrap();
    let kek = Kek::from_bytes(&[6; 32]);
    let name = DatastoreName::parse("measured").unwrap();
    let ds = record("measured", &etcd, &pki, &kek);
    let tracker = UsageTracker::new(kek, Duration::from_secs(5));
    tracker.track(std::slice::from_ref(&ds));
    let (team, team_a) = (
        TenantId::parse("team").unwrap(),
        TenantId::parse("team-a").unwrap(),
    );
    // Waits until kamajid's figures for every tenant equal a fresh scan.
    let agree = |tracker: std::sync::Arc<UsageTracker>, mut admin: Client| {
        let (name, team, team_a) = (name.clone(), team.clone(), team_a.clone());
        async move {
            let mut last = None;
            for _ in 0..100 {
                let want = (
                    scanned(&mut admin, "team").await,
                    scanned(&mut admin, "team-a").await,
                );
                let got = (tracker.tenant(&name, &team), tracker.tenant(&name, &team_a));
                if got == (Some(want.0), Some(want.1)) {
                    let mut total = want.0;
                    total += want.1;
                    assert_eq!(tracker.datastore(&name), Some(total));
                    return want;
                }
                last = Some((got, want));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("kamajid's figures never matched a scan: {last:?}");
        }
    };
    let (t, _) = agree(tracker.clone(), admin.clone()).await;
    assert_eq!(t.keys, 1200);

    // Changes after the scan: a bigger value, a new key, a delete, a whole prefix deleted.
    admin
        .put("/team/configmaps/default/c0", "z".repeat(5000), None)
        .await
        .unwrap();
    admin.put("/team-a/secrets/t", "w", None).await.unwrap();
    admin
        .delete("/team/configmaps/default/c1", None)
        .await
        .unwrap();
    admin
        .delete(
            "/team/configmaps/default/c2",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let (t, a) = agree(tracker.clone(), admin.clone()).await;
    assert_eq!(a.keys, 2);
    assert!(t.bytes > 1000 * 100 + 5000, "{t:?}");

    // History compacted while the figures are followed, then more writes: still exact.
    let rev = admin
        .put("/team/configmaps/default/late", "l", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    admin.compact(rev, None).await.unwrap();
    admin
        .put("/team/configmaps/default/later", "m", None)
        .await
        .unwrap();
    agree(tracker.clone(), admin.clone()).await;

    // A datastore no longer registered is no longer measured.
    tracker.track(&[]);
    assert_eq!(tracker.tenant(&name, &team), None);
}

async fn revision_of(c: &mut Client) -> i64 {
    c.get("any", Some(GetOptions::new().with_count_only()))
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

/// A move's target far behind its source is raised a bounded number of writes per call, each
/// call saying how far it still is, until it is past the source, with nothing left of the raise.
#[tokio::test]
async fn a_target_revision_is_raised_past_the_source_in_bounded_rounds() {
    kamajid::server::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let (src, dst) = (
        EtcdProcess::start(dir.path(), "src", &pki, EtcdSecurity::default())
            .await
            .unwrap(),
        EtcdProcess::start(dir.path(), "dst", &pki, EtcdSecurity::default())
            .await
            .unwrap(),
    );
    let (mut s, mut d) = (
        client_as(&src, &pki, &pki.root).await,
        client_as(&dst, &pki, &pki.root).await,
    );
    for i in 0..2500 {
        s.put(format!("/t/{}", i % 10), "v", None).await.unwrap();
    }
    let kek = Kek::from_bytes(&[6; 32]);
    let (from, to) = (
        record("src", &src, &pki, &kek),
        record("dst", &dst, &pki, &kek),
    );
    let isolation = EtcdIsolation::new(
        kek.clone(),
        Duration::from_secs(5),
        UsageTracker::new(kek, Duration::from_secs(5)),
        Default::default(),
    );

    let (want, before) = (revision_of(&mut s).await, revision_of(&mut d).await);
    let gap = u64::try_from(want - before + 1).unwrap();
    let left = isolation.align_revision(&from, &to, 1000).await.unwrap();
    assert_eq!(left, gap - 1000, "one round of 1000 writes");
    assert_eq!(revision_of(&mut d).await, before + 1000);

    let left = isolation
        .align_revision(&from, &to, u64::MAX)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert!(revision_of(&mut d).await > want);
    let floor = d
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_count_only()),
        )
        .await
        .unwrap()
        .count();
    assert_eq!(floor, 0, "the key the revision was raised with is gone");
    // Already past: nothing more is written.
    let past = revision_of(&mut d).await;
    assert_eq!(isolation.align_revision(&from, &to, 10).await.unwrap(), 0);
    assert_eq!(revision_of(&mut d).await, past);
}

/// A move's copy keeps keys that expire (Events, with a lease) expiring on the target, after the
/// time their lease had left on the source; keys without a lease stay without one.
#[tokio::test]
async fn a_copy_grants_each_lease_again_with_the_time_it_had_left() {
    kamajid::server::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let (src, dst) = (
        EtcdProcess::start(dir.path(), "src", &pki, EtcdSecurity::default())
            .await
            .unwrap(),
        EtcdProcess::start(dir.path(), "dst", &pki, EtcdSecurity::default())
            .await
            .unwrap(),
    );
    let (mut s, mut d) = (
        client_as(&src, &pki, &pki.root).await,
        client_as(&dst, &pki, &pki.root).await,
    );
    let lease = s.lease_grant(3600, None).await.unwrap().id();
    let short = s.lease_grant(60, None).await.unwrap().id();
    for i in 0..150 {
        let opts =
            etcd_client::PutOptions::new().with_lease(if i % 2 == 0 { lease } else { short });
        s.put(format!("/mover/events/default/e{i}"), "event", Some(opts))
            .await
            .unwrap();
    }
    s.put("/mover/configmaps/default/c", "kept", None)
        .await
        .unwrap();
    let kek = Kek::from_bytes(&[8; 32]);
    let (from, to) = (
        record("src", &src, &pki, &kek),
        record("dst", &dst, &pki, &kek),
    );
    let isolation = EtcdIsolation::new(
        kek.clone(),
        Duration::from_secs(5),
        UsageTracker::new(kek, Duration::from_secs(5)),
        Default::default(),
    );
    let id = TenantId::parse("mover").unwrap();
    let copied = isolation.copy(&from, &to, &id).await.unwrap();
    assert_eq!(copied.keys, 151);
    let got = d
        .get("/mover/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut leases = std::collections::BTreeMap::new();
    for kv in got.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        if key.contains("/events/") {
            assert_ne!(kv.lease(), 0, "{key} lost its lease");
            *leases.entry(kv.lease()).or_insert(0) += 1;
        } else {
            assert_eq!(kv.lease(), 0, "{key} got a lease");
        }
    }
    assert_eq!(
        leases.len(),
        2,
        "one lease on the target per lease on the source"
    );
    for (l, keys) in leases {
        let ttl = d.lease_time_to_live(l, None).await.unwrap().ttl();
        assert_eq!(keys, 75);
        assert!(
            (50..=60).contains(&ttl) || (3590..=3600).contains(&ttl),
            "a copied lease has {ttl} s left"
        );
    }
}
