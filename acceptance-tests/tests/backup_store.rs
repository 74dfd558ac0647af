//! Tenant backups at the storage level, against real programs: two etcds with TLS and auth (a
//! tenant's prefix is read from one at one revision and written back under another tenant's
//! prefix on the other), kamajid's state etcd for the records, and both backup stores: a
//! directory, and S3 served by a real S3-compatible server (gofakes3, built from its Go module)
//! on loopback.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use acceptance_tests::tunnel::go_tool;
use acceptance_tests::{free_port, DevPki, EtcdProcess, EtcdSecurity};
use etcd_client::{Client, GetOptions, PutOptions};
use kamaji_core::backup::archive::Secrets;
use kamaji_core::ids::{TenantId, TenantName};
use kamaji_core::kek::Kek;
use kamaji_core::pki::EncryptionKey;
use kamaji_core::tenant::{TenantRecord, WireSpec};
use kamajid::backup::{store, BackupError, Backups};
use kamajid::etcd::{connect, EtcdTls};
use kamajid::store::Store;

async fn root(etcd: &EtcdProcess, pki: &DevPki) -> Client {
    let tls = EtcdTls {
        ca_pem: Some(pki.ca.cert.clone()),
        identity: Some((pki.root.cert.clone(), pki.root.key.clone())),
    };
    connect(
        std::slice::from_ref(&etcd.endpoint),
        &tls,
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

/// Every key under `prefix` with its value, the prefix cut off.
async fn keys(c: &Client, prefix: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let r = kamajid::datastore::transfer::kv(c)
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    r.kvs()
        .iter()
        .map(|kv| (kv.key()[prefix.len()..].to_vec(), kv.value().to_vec()))
        .collect()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real S3-compatible server on loopback with bucket `kamaji`, and the environment kamajid's
/// S3 store reads (as an operator sets it for kamajid's pod).
async fn s3_server() -> Killed {
    let port = free_port();
    let child = Command::new(go_tool("gofakes3"))
        .args([
            "-backend",
            "memory",
            "-initialbucket",
            "kamaji",
            "-host",
            &format!("127.0.0.1:{port}"),
            "-quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gofakes3");
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (k, v) in [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "kamaji"),
        ("AWS_SECRET_ACCESS_KEY", "kamaji-secret"),
    ] {
        std::env::set_var(k, v);
    }
    Killed(child)
}

/// A tenant whose prefix holds `n` keys (every 50th a 64 KiB value, the rest about 1 KiB), one
/// key bound to a lease (as Events are), on `c`.
async fn tenant(c: &Client, name: &str, n: usize) -> TenantRecord {
    let mut rec = TenantRecord::new(
        TenantName::parse(name).unwrap(),
        WireSpec(String::new()),
        64 << 20,
        1_796_000_000,
    );
    rec.current_version = Some("1.37.2".into());
    let p = kamaji_core::etcd_keys::prefix(&rec.uid);
    let mut kv = c.kv_client();
    for i in 0..n {
        let size = if i % 50 == 0 { 64 * 1024 } else { 1000 };
        kv.put(
            format!("{p}configmaps/default/cm-{i:06}"),
            vec![(i % 251) as u8; size],
            None,
        )
        .await
        .unwrap();
    }
    let lease = c.lease_client().grant(600, None).await.unwrap().id();
    kv.put(
        format!("{p}events/default/e1"),
        "an event",
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();
    rec
}

fn secrets() -> Secrets {
    Secrets {
        encryption_keys: vec![EncryptionKey::generate(2), EncryptionKey::generate(1)],
        encrypted_resources: vec!["configmaps".into()],
        identity: None,
    }
}

#[tokio::test]
async fn a_tenant_backup_round_trips_through_a_directory_and_s3_and_refuses_a_corrupt_archive() {
    kamajid::server::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let (state, a, b) = tokio::join!(
        EtcdProcess::start(dir.path(), "state", &pki, EtcdSecurity::state()),
        EtcdProcess::start(dir.path(), "shard-a", &pki, EtcdSecurity::default()),
        EtcdProcess::start(dir.path(), "shard-b", &pki, EtcdSecurity::default()),
    );
    let (state, a, b) = (state.unwrap(), a.unwrap(), b.unwrap());
    let (records, ca, cb) = (
        Store::new(root(&state, &pki).await),
        root(&a, &pki).await,
        root(&b, &pki).await,
    );
    let kek = Kek::from_bytes(&[9; 32]);
    let src = tenant(&ca, "src", 1500).await;
    let src_prefix = kamaji_core::etcd_keys::prefix(&src.uid);
    // Keys bound to a lease (the Event) are left out of backups.
    let before: BTreeMap<_, _> = keys(&ca, &src_prefix)
        .await
        .into_iter()
        .filter(|(k, _)| !k.starts_with(b"events/"))
        .collect();
    // A neighbour on the shard restored into, whose keys must not change.
    let neighbour = tenant(&cb, "nb", 20).await;
    let nb_prefix = kamaji_core::etcd_keys::prefix(&neighbour.uid);
    let nb_before = ca_revisions(&cb, &nb_prefix).await;

    let _s3 = s3_server().await;
    let directory = format!("file://{}", dir.path().join("backups").display());
    for (i, url) in [directory.as_str(), "s3://kamaji/tenant-backups"]
        .into_iter()
        .enumerate()
    {
        let opened = store::open(url).unwrap();
        let backups = Backups::new(opened, records.clone(), kek.clone());
        let taken = backups
            .take(
                &src,
                &secrets(),
                &ca,
                Default::default(),
                false,
                1_796_000_000,
            )
            .await
            .unwrap();
        assert_eq!(taken.keys, 1500, "{url}: every key but the leased one");
        assert_eq!(taken.kubernetes_version, "1.37.2");
        // Writes after the backup are not in it: it is the prefix at its revision.
        ca.kv_client()
            .put(format!("{src_prefix}configmaps/default/after"), "x", None)
            .await
            .unwrap();

        let copy = TenantId::parse(&format!("copy-{i}")).unwrap();
        let copy_prefix = kamaji_core::etcd_keys::prefix(&copy);
        // Something a failed earlier attempt left: replaced.
        cb.kv_client()
            .put(format!("{copy_prefix}leftover"), "x", None)
            .await
            .unwrap();
        let restored = backups.restore(&taken.id, &cb, &copy).await.unwrap();
        assert_eq!(restored.keys, 1500);
        assert_eq!(restored.secrets, secrets_like(&restored.secrets));
        assert_eq!(
            keys(&cb, &copy_prefix).await,
            before,
            "{url}: the copy is the tenant at the backup's revision"
        );
        assert_eq!(
            ca_revisions(&cb, &nb_prefix).await,
            nb_before,
            "{url}: the neighbour is untouched"
        );
        assert_eq!(backups.list("src").await.unwrap().len(), 1);

        // One byte flipped in the stored archive: refused, and the target left as it was.
        let loc = object_store::path::Path::from(taken.location.as_str());
        let mut bytes = object_store::ObjectStoreExt::get(&*backups.store.objects, &loc)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        object_store::ObjectStoreExt::put(&*backups.store.objects, &loc, bytes.clone().into())
            .await
            .unwrap();
        let err = backups.restore(&taken.id, &cb, &copy).await.unwrap_err();
        assert!(
            matches!(
                err,
                BackupError::Archive { .. } | BackupError::Digest { .. }
            ),
            "{url}: {err}"
        );
        assert!(
            err.to_string().contains("corrupt") || err.to_string().contains("digest"),
            "{err}"
        );
        assert_eq!(
            keys(&cb, &copy_prefix).await,
            before,
            "{url}: nothing was touched"
        );

        // Deleted: the archive and the record go.
        backups.delete(&taken.id).await.unwrap();
        assert!(backups.list("src").await.unwrap().is_empty());
        assert!(matches!(
            backups.record(&taken.id).await,
            Err(BackupError::NotFound(_))
        ));
        let _ = ca
            .kv_client()
            .delete(format!("{src_prefix}configmaps/default/after"), None)
            .await;
    }
}

/// What a restore hands back is what the backup carried (keys in their order).
fn secrets_like(s: &Secrets) -> Secrets {
    assert_eq!(s.encryption_keys.len(), 2);
    assert_eq!(s.encryption_keys[0].rotation, 2);
    assert_eq!(s.encrypted_resources, ["configmaps"]);
    s.clone()
}

/// Every key under `prefix` with its mod revision.
async fn ca_revisions(c: &Client, prefix: &str) -> BTreeMap<Vec<u8>, i64> {
    let r = c
        .clone()
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    r.kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.mod_revision()))
        .collect()
}

#[tokio::test]
async fn a_backup_cut_short_leaves_nothing_and_a_restore_cut_short_is_completed_by_the_next() {
    kamajid::server::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let (state, a) = tokio::join!(
        EtcdProcess::start(dir.path(), "state", &pki, EtcdSecurity::state()),
        EtcdProcess::start(dir.path(), "shard-a", &pki, EtcdSecurity::default()),
    );
    let (state, a) = (state.unwrap(), a.unwrap());
    let (records, ca) = (Store::new(root(&state, &pki).await), root(&a, &pki).await);
    let kek = Kek::from_bytes(&[9; 32]);
    let src = tenant(&ca, "src", 3000).await;
    let store_dir = dir.path().join("backups");
    let backups = Backups::new(
        store::open(store_dir.to_str().unwrap()).unwrap(),
        records,
        kek,
    );
    // Timed whole first, so that the cuts below land part-way on a fast or a slow machine.
    let started = std::time::Instant::now();
    let taken = backups
        .take(
            &src,
            &secrets(),
            &ca,
            Default::default(),
            false,
            1_796_000_000,
        )
        .await
        .unwrap();
    let whole = started.elapsed();
    // A backup stopped part-way (kamajid killed: its future dropped): no record, and no
    // archive in the store, only an upload that never completed. Cut sooner until it is cut.
    let mut cut = false;
    for div in [3, 6, 12, 24, 48] {
        let r = tokio::time::timeout(
            whole / div,
            backups.take(
                &src,
                &secrets(),
                &ca,
                Default::default(),
                false,
                1_796_000_001,
            ),
        )
        .await;
        if r.is_err() {
            cut = true;
            break;
        }
        let extra = r.unwrap().unwrap();
        backups.delete(&extra.id).await.unwrap();
    }
    assert!(cut, "the backup always finished before it could be cut");
    assert_eq!(
        backups.list("src").await.unwrap(),
        std::slice::from_ref(&taken)
    );
    let archives = walk(&store_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "kbak"))
        .count();
    assert_eq!(archives, 1, "only the finished backup's archive");

    // A restore stopped once some of its keys are written, but not all.
    let copy = TenantId::parse("copy").unwrap();
    let mut half = 0;
    for _ in 0..5 {
        let _ = ca
            .kv_client()
            .delete(
                "/copy/",
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await;
        let watch = async {
            loop {
                let n = keys(&ca, "/copy/").await.len();
                if n > 0 && n < 3000 {
                    return n;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            r = backups.restore(&taken.id, &ca, &copy) => { r.unwrap(); }
            n = watch => { half = n; break; }
        }
    }
    assert!(half > 0, "the restore was never caught part-way");
    let half = keys(&ca, "/copy/").await.len();
    assert!(half < 3000, "cut part-way: {half} keys");
    backups.restore(&taken.id, &ca, &copy).await.unwrap();
    let src_prefix = kamaji_core::etcd_keys::prefix(&src.uid);
    let want: BTreeMap<_, _> = keys(&ca, &src_prefix)
        .await
        .into_iter()
        .filter(|(k, _)| !k.starts_with(b"events/"))
        .collect();
    assert_eq!(keys(&ca, "/copy/").await, want);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
