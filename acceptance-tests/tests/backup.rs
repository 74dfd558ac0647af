//! Per-tenant backup and restore on the real programs: terraform (or tofu), two real etcd
//! shards, real control planes (the newest version, and the oldest for the version rule) run by
//! kamajid's process runtime, and a directory backup store. A backup of a tenant on shard A is
//! restored into a new tenant on shard B: what it held at the backup answers kubectl there,
//! Secrets read back decrypted and stay encrypted at rest, what was written after the backup is
//! not there. A corrupt archive and a backup from a newer minor are refused before anything is
//! created.

use std::time::Instant;

use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::*;
use etcd_client::GetOptions;

fn hcl(src_version: &str, extra: &str, a: &DatastoreHcl, b: &DatastoreHcl) -> String {
    format!(
        r#"{PROVIDER_HCL}
{}
{}
resource "kamaji_tenant_cluster" "src" {{
  name               = "src"
  kubernetes_version = "{src_version}"
  datastore          = kamaji_datastore.a.name
  network {{}}
  backup_schedule {{
    interval        = "1m"
    retention_count = 1
  }}
}}
{extra}
"#,
        a.render(),
        b.render()
    )
}

const BACKUP: &str = r#"
resource "kamaji_tenant_backup" "b1" {
  tenant_cluster = kamaji_tenant_cluster.src.name
  labels         = { reason = "before-migration" }
}

data "kamaji_tenant_backups" "src" {
  tenant_cluster = kamaji_tenant_cluster.src.name
  depends_on     = [kamaji_tenant_backup.b1]
}
"#;

fn restored(name: &str, version: &str, datastore: &str) -> String {
    format!(
        r#"
resource "kamaji_tenant_cluster" "{name}" {{
  name               = "{name}"
  kubernetes_version = "{version}"
  datastore          = kamaji_datastore.{datastore}.name
  restore_from       = kamaji_tenant_backup.b1.id
  network {{}}
}}
"#
    )
}

/// A cluster restored from b1 that keeps the backed-up cluster's identity.
const TWIN: &str = r#"
resource "kamaji_tenant_cluster" "twin" {
  name                  = "twin"
  kubernetes_version    = kamaji_tenant_cluster.src.kubernetes_version
  datastore             = kamaji_datastore.a.name
  restore_from          = kamaji_tenant_backup.b1.id
  restore_keep_identity = true
  network {}
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_of_a_tenant_on_one_shard_restores_into_a_new_tenant_on_another() {
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("backups");
    let (h, tenants_dir, _) = Harness::with_process_runtime_args(
        root.path(),
        &k8s::bin_dir(),
        0,
        vec![format!("--backup-store={}", store.display())],
    )
    .await;
    let _reaper = Reaper(tenants_dir.clone());
    let (shard_a, shard_b) = (
        h.etcd("shard-a", EtcdSecurity::default()).await,
        h.etcd("shard-b", EtcdSecurity::default()).await,
    );
    let (a, b) = (
        DatastoreHcl::new("a", "a", &shard_a.endpoint),
        DatastoreHcl::new("b", "b", &shard_b.endpoint),
    );
    let version = k8s::newest();
    let w = h.workdir("backup");
    w.write(&hcl(&version, "", &a, &b));
    w.must_apply();
    let src = w.resource("kamaji_tenant_cluster.src")["values"].clone();
    let admin = Kubectl::new(
        &w.dir.join("src.kubeconfig"),
        src["admin_kubeconfig"].as_str().unwrap(),
    );
    admin.must(&["create", "namespace", "team"]);
    admin.must(&[
        "-n",
        "team",
        "create",
        "configmap",
        "before",
        "--from-literal=k=v",
    ]);
    admin.must(&[
        "-n",
        "team",
        "create",
        "secret",
        "generic",
        "token",
        "--from-literal=s=t0p",
    ]);

    // The backup, and the listing.
    w.write(&hcl(&version, BACKUP, &a, &b));
    let started = Instant::now();
    w.must_apply();
    let took = started.elapsed();
    let b1 = w.resource("kamaji_tenant_backup.b1")["values"].clone();
    let id = b1["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("src-"), "{b1:#}");
    assert!(b1["keys"].as_i64().unwrap() > 50, "{b1:#}");
    assert!(b1["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(b1["kubernetes_version"], version.as_str());
    assert_eq!(b1["labels"]["reason"], "before-migration");
    let archive = store.join("src").join(format!("{id}.kbak"));
    assert!(archive.is_file(), "{}", b1["location"]);
    assert_eq!(
        b1["location"].as_str().unwrap(),
        format!("file://{}", archive.display())
    );
    let listing = w.state_json();
    let backups = find(&listing, "data.kamaji_tenant_backups.src")["values"]["backups"].clone();
    let listed: Vec<&serde_json::Value> = backups
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["labels"]["reason"] == "before-migration")
        .collect();
    assert_eq!(listed.len(), 1, "{backups:#}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(w.plan_code().code, 0, "a backup plans no change once taken");
    // Written after the backup: not in it.
    admin.must(&["-n", "team", "create", "configmap", "after"]);

    // Restored into a new tenant on the other shard.
    w.write(&hcl(
        &version,
        &format!("{BACKUP}{TWIN}{}", restored("copy", &version, "b")),
        &a,
        &b,
    ));
    let started = Instant::now();
    w.must_apply();
    let restore_took = started.elapsed();
    let copy = w.resource("kamaji_tenant_cluster.copy")["values"].clone();
    assert_eq!(copy["status"], "Ready", "{copy:#}");
    assert_eq!(copy["datastore"], "b");
    assert_eq!(copy["restore_from"], id.as_str());
    assert_ne!(
        copy["cluster_ca_certificate"], src["cluster_ca_certificate"],
        "its own CA"
    );
    let kc = Kubectl::new(
        &w.dir.join("copy.kubeconfig"),
        copy["admin_kubeconfig"].as_str().unwrap(),
    );
    let cm = kc.json(&["-n", "team", "configmap", "before"]);
    assert_eq!(cm["data"]["k"], "v");
    let secret = kc.json(&["-n", "team", "secret", "token"]);
    assert_eq!(
        secret["data"]["s"], "dDBw",
        "base64 of t0p, decrypted by the new apiserver"
    );
    let after = kc.run(&["-n", "team", "get", "configmap", "after"]);
    assert!(
        !after.ok && after.stderr.contains("NotFound"),
        "{}",
        after.stderr
    );
    // New objects work, and the copy's Secrets stay encrypted at rest on shard B.
    kc.must(&["-n", "team", "create", "configmap", "new-here"]);
    let etcd_b = h.shard_root(&shard_b.endpoint).await;
    let uid = copy["uid"].as_str().unwrap();
    let stored = etcd_b
        .clone()
        .get(format!("/{uid}/secrets/team/token"), None)
        .await
        .unwrap();
    let value = stored
        .kvs()
        .first()
        .expect("the restored Secret on shard B")
        .value();
    assert!(
        value.starts_with(b"k8s:enc:secretbox:v1:"),
        "{:?}",
        String::from_utf8_lossy(&value[..30])
    );
    // Nothing of the copy on shard A, nothing of the source on shard B.
    let src_uid = src["uid"].as_str().unwrap();
    let on_b = etcd_b
        .clone()
        .get(
            format!("/{src_uid}/"),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count();
    assert_eq!(on_b, 0);
    assert_eq!(w.plan_code().code, 0, "a restored cluster plans no change");

    // The twin kept src's identity: src's own admin credentials work against it.
    let twin = w.resource("kamaji_tenant_cluster.twin")["values"].clone();
    assert_eq!(twin["status"], "Ready", "{twin:#}");
    assert_eq!(
        twin["cluster_ca_certificate"],
        src["cluster_ca_certificate"]
    );
    assert_ne!(twin["endpoint"], src["endpoint"]);
    let src_creds_at_twin = src["admin_kubeconfig"].as_str().unwrap().replace(
        src["endpoint"].as_str().unwrap(),
        twin["endpoint"].as_str().unwrap(),
    );
    let at_twin = Kubectl::new(&w.dir.join("twin-as-src.kubeconfig"), &src_creds_at_twin);
    let cm = at_twin.json(&["-n", "team", "configmap", "before"]);
    assert_eq!(cm["data"]["k"], "v");

    // A backup from a newer minor: refused at plan, naming restore_from.
    let oldest = k8s::oldest();
    if oldest != version {
        w.write(&hcl(
            &version,
            &format!(
                "{BACKUP}{TWIN}{}{}",
                restored("copy", &version, "b"),
                restored("old", &oldest, "a")
            ),
            &a,
            &b,
        ));
        let plan = w.plan_code();
        assert_eq!(plan.code, 1, "{}", plan.output());
        assert!(
            plan.output().contains("restore_from") && plan.output().contains("newer minor"),
            "{}",
            plan.output()
        );
    }

    // One byte of the archive flipped: the apply is refused naming restore_from, and no
    // cluster was created.
    let good = std::fs::read(&archive).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    std::fs::write(&archive, &bad).unwrap();
    w.write(&hcl(
        &version,
        &format!(
            "{BACKUP}{TWIN}{}{}",
            restored("copy", &version, "b"),
            restored("bad", &version, "a")
        ),
        &a,
        &b,
    ));
    let r = w.apply();
    assert!(!r.ok(), "{}", r.output());
    assert!(
        r.output().contains("restore_from")
            && (r.output().contains("corrupt") || r.output().contains("digest")),
        "{}",
        r.output()
    );
    let mut tenants = h.tenants().await;
    let got = tenants
        .get_tenant_cluster(kamaji_proto::v1::GetTenantClusterRequest { name: "bad".into() })
        .await;
    assert_eq!(
        got.unwrap_err().code(),
        tonic::Code::NotFound,
        "nothing was created"
    );
    std::fs::write(&archive, &good).unwrap();

    // The schedule (every minute, keeping one) ran meanwhile: its last run is reported, and
    // exactly one scheduled backup is kept beside the one asked for.
    w.write(&hcl(
        &version,
        &format!("{BACKUP}{TWIN}{}", restored("copy", &version, "b")),
        &a,
        &b,
    ));
    acceptance_tests::tunnel::until("two scheduled backups", 150, || {
        let runs = h.log_tail(4000).matches("scheduled backup let go").count();
        (runs >= 1)
            .then_some(())
            .ok_or(format!("{runs} pruned so far"))
    });
    w.must_apply();
    let src = w.resource("kamaji_tenant_cluster.src")["values"].clone();
    assert!(src["last_backup_at"].is_string(), "{src:#}");
    assert_eq!(src["last_backup_error"], "", "{src:#}");
    assert!(src["next_backup_at"].is_string(), "{src:#}");
    let listing = w.state_json();
    let backups = find(&listing, "data.kamaji_tenant_backups.src")["values"]["backups"].clone();
    let scheduled: Vec<&serde_json::Value> = backups
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["labels"]["kamaji.clastix.io/scheduled"] == "true")
        .collect();
    assert_eq!(scheduled.len(), 1, "retention_count = 1: {backups:#}");
    assert_eq!(scheduled[0]["id"], src["last_backup_id"]);

    // Destroyed: the clusters go, and so does the archive.
    w.write(&hcl(
        &version,
        &format!("{BACKUP}{TWIN}{}", restored("copy", &version, "b")),
        &a,
        &b,
    ));
    let d = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(d.ok(), "{}", d.output());
    assert!(
        !archive.exists(),
        "the archive was deleted with its resource"
    );
    eprintln!(
        "backup: {} keys, {} bytes archived in {took:?} (apply); restore into a new cluster on \
         another shard: {restore_took:?} from apply to Ready",
        b1["keys"], b1["size_bytes"]
    );
}

fn find(state: &serde_json::Value, address: &str) -> serde_json::Value {
    state["values"]["root_module"]["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["address"] == address))
        .cloned()
        .unwrap_or_else(|| panic!("{address} is not in state"))
}

/// Every key under `prefix` on `c` with its value and mod revision.
async fn keyspace(
    c: &etcd_client::Client,
    prefix: &str,
) -> std::collections::BTreeMap<Vec<u8>, (Vec<u8>, i64)> {
    let r = c
        .clone()
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    r.kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), (kv.value().to_vec(), kv.mod_revision())))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_rolled_back_in_place_gets_its_objects_back_and_its_neighbour_is_untouched() {
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("backups");
    let (mut h, tenants_dir, _) = Harness::with_process_runtime_args(
        root.path(),
        &k8s::bin_dir(),
        1,
        vec![format!("--backup-store={}", store.display())],
    )
    .await;
    let _reaper = Reaper(tenants_dir.clone());
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "a", &shard.endpoint);
    let version = k8s::newest();
    let base = format!(
        r#"{PROVIDER_HCL}
{}
resource "kamaji_tenant_cluster" "prod" {{
  name               = "prod"
  kubernetes_version = "{version}"
  datastore          = kamaji_datastore.a.name
  network {{}}
}}
"#,
        ds.render()
    );
    let backup = r#"
resource "kamaji_tenant_backup" "b1" {
  tenant_cluster = kamaji_tenant_cluster.prod.name
}
"#;
    let restore = r#"
resource "kamaji_tenant_restore" "r1" {
  tenant_cluster = kamaji_tenant_cluster.prod.name
  backup_id      = kamaji_tenant_backup.b1.id
}
"#;
    let w = h.workdir("inplace");
    w.write(&base);
    w.must_apply();
    let prod = w.resource("kamaji_tenant_cluster.prod")["values"].clone();
    let kc = Kubectl::new(
        &w.dir.join("prod.kubeconfig"),
        prod["admin_kubeconfig"].as_str().unwrap(),
    );
    kc.must(&["create", "configmap", "settings", "--from-literal=k=v"]);
    kc.must(&[
        "create",
        "secret",
        "generic",
        "token",
        "--from-literal=s=t0p",
    ]);
    w.write(&format!("{base}{backup}"));
    w.must_apply();
    // After the backup: one object changed, one deleted, one created.
    kc.must(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data":{"k":"changed"}}"#,
    ]);
    kc.must(&["delete", "secret", "token"]);
    kc.must(&["create", "configmap", "after"]);
    let seen_rv: i64 = kc.json(&["configmap", "settings"])["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // A neighbour on the same shard writing throughout (a writer under another prefix, as its
    // apiserver would), and what it holds before.
    let etcd = h.shard_root(&shard.endpoint).await;
    let mut nb = etcd.kv_client();
    for i in 0..50 {
        nb.put(
            format!("/neighbour/configmaps/default/c{i}"),
            format!("v{i}"),
            None,
        )
        .await
        .unwrap();
    }
    let nb_before = keyspace(&etcd, "/neighbour/configmaps/").await;
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (mut nb, writing) = (etcd.kv_client(), writing.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while writing.load(std::sync::atomic::Ordering::SeqCst) {
                nb.put(
                    format!("/neighbour/leases/l{}", n % 10),
                    format!("{n}"),
                    None,
                )
                .await
                .expect("the neighbour's write was refused");
                n += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            n
        })
    };

    // The restore, with kamajid killed once while it is under way: the apply waits through it.
    w.write(&format!("{base}{backup}{restore}"));
    let applying = {
        let w = h.workdir("inplace");
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = w.apply();
            (r.ok(), r.output(), started.elapsed())
        })
    };
    let mut phases = Vec::new();
    let mut killed = false;
    while !applying.is_finished() {
        let mut c = h.tenants().await;
        if let Ok(t) = c
            .get_tenant_cluster(kamaji_proto::v1::GetTenantClusterRequest {
                name: "prod".into(),
            })
            .await
        {
            let phase = t.into_inner().status.unwrap_or_default().phase;
            if phases.last() != Some(&phase) {
                phases.push(phase);
            }
            if phase == kamaji_proto::v1::TenantClusterPhase::Restoring as i32 && !killed {
                h.restart_kamajid();
                killed = true;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (ok, output, took) = applying.join().unwrap();
    assert!(ok, "{output}");
    assert!(killed, "never saw the cluster Restoring: {phases:?}");
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let neighbour_writes = writer.await.unwrap();
    let r1 = w.resource("kamaji_tenant_restore.r1")["values"].clone();
    assert!(r1["keys"].as_i64().unwrap() > 50, "{r1:#}");

    // The objects as they were at the backup, Secrets decrypted; what came after is gone.
    let settings = kc.json(&["configmap", "settings"]);
    assert_eq!(settings["data"]["k"], "v");
    let secret = kc.json(&["secret", "token"]);
    assert_eq!(secret["data"]["s"], "dDBw");
    let after = kc.run(&["get", "configmap", "after"]);
    assert!(
        !after.ok && after.stderr.contains("NotFound"),
        "{}",
        after.stderr
    );
    // Revisions moved forward: the restored object is newer than anything a client saw.
    let rv: i64 = settings["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > seen_rv, "resourceVersion {rv} is not past {seen_rv}");
    kc.must(&["create", "configmap", "written-after-restore"]);
    // The neighbour: every write taken, its keys as they were.
    assert!(neighbour_writes > 10, "{neighbour_writes}");
    assert_eq!(keyspace(&etcd, "/neighbour/configmaps/").await, nb_before);
    let prod_after = w.resource("kamaji_tenant_cluster.prod")["values"].clone();
    assert_eq!(prod_after["status"], "Ready");
    for kept in ["endpoint", "cluster_ca_certificate", "uid"] {
        assert_eq!(prod_after[kept], prod[kept], "{kept} changed");
    }
    assert_eq!(w.plan_code().code, 0, "a restored cluster plans no change");
    eprintln!(
        "in-place restore: {} keys, writes held {} s, apply {took:?} (kamajid killed once \
         during it); phases seen {phases:?}; the neighbour wrote {neighbour_writes} times meanwhile",
        r1["keys"], r1["write_hold_seconds"]
    );
}
