//! A shared shard that raised `NOSPACE`, on the real programs: a real etcd shard with a small
//! `--quota-backend-bytes`, a real control plane (the newest version built from the
//! `k8s.io/kubernetes` module, run by kamajid's process runtime) and terraform. Filled with
//! history, kamajid recovers it by itself; filled with live data, it says why it cannot, its
//! tenant is Degraded and no new tenant is placed there, until the data goes.

use std::time::{Duration, Instant};

use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::*;
use kamaji_proto::v1;

const MIB: i64 = 1 << 20;

async fn tenant(h: &Harness, name: &str) -> v1::TenantCluster {
    h.tenants()
        .await
        .get_tenant_cluster(v1::GetTenantClusterRequest { name: name.into() })
        .await
        .expect("get tenant")
        .into_inner()
}

/// Puts `size`-byte values under `key(i)` as the shard's root until etcd refuses one; how many
/// went in, how long it took, and the refusal.
async fn fill(
    c: &mut etcd_client::Client,
    size: usize,
    key: impl Fn(u32) -> String,
) -> (u32, Duration, String) {
    let start = Instant::now();
    for i in 0..100_000u32 {
        let v = vec![b'a' + (i % 26) as u8; size];
        if let Err(e) = c.put(key(i), v, None).await {
            return (i, start.elapsed(), e.to_string());
        }
    }
    panic!("etcd never refused a write");
}

async fn datastore(h: &Harness, name: &str) -> v1::DatastoreStatus {
    h.client()
        .await
        .get_datastore(v1::GetDatastoreRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

/// Polls until `f` holds on tenant `t`, for at most `secs`; how long it took.
async fn until_tenant(
    h: &Harness,
    t: &str,
    secs: u64,
    what: &str,
    f: impl Fn(&v1::TenantClusterStatus) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let st = tenant(h, t).await.status.unwrap();
        if f(&st) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "never {what}: {st:?}\nkamajid's log:\n{}",
            h.log_tail(60)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_that_raised_nospace_recovers_by_itself_or_says_why_it_cannot() {
    let root = tempfile::tempdir().unwrap();
    let (h, tenants_dir, _) = Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 1).await;
    let _reaper = Reaper(tenants_dir);
    let shard_quota = 128 * MIB;
    let shard = h
        .etcd("small", EtcdSecurity::with_quota(shard_quota as u64))
        .await;
    let mut ds = DatastoreHcl::new("a", "small", &shard.endpoint);
    ds.extra = format!("  quota_bytes = {shard_quota}\n");
    let version = k8s::newest();
    let w = h.workdir("nospace");
    let tenant_hcl = |name: &str| {
        format!(
            r#"
resource "kamaji_tenant_cluster" "{name}" {{
  name               = "{name}"
  kubernetes_version = "{version}"
  datastore          = kamaji_datastore.a.name
  network {{}}
}}
"#
        )
    };
    let base = format!("{PROVIDER_HCL}\n{}\n{}", ds.render(), tenant_hcl("t"));
    w.write(&base);
    w.must_apply();
    let t = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    let admin = Kubectl::new(
        &w.dir.join("t.kubeconfig"),
        t["admin_kubeconfig"].as_str().unwrap(),
    );
    admin.must(&["create", "configmap", "before"]);
    let mut root_c = h.shard_root(&shard.endpoint).await;

    // 1. Something outside any tenant rewrites one key until etcd refuses: history fills the
    // shard. kamajid recovers it by itself (compaction, defragmentation, disarm).
    let (n, took, refusal) = fill(&mut root_c, 1 << 20, |_| "filler".into()).await;
    let alarmed = Instant::now();
    assert!(refusal.contains("space exceeded"), "{refusal}");
    let seen = admin.run(&["create", "configmap", "during"]);
    assert!(
        !seen.ok && seen.stderr.contains("space exceeded"),
        "{}",
        seen.stderr
    );
    admin.eventually(&["create", "configmap", "after"], 60);
    let back = alarmed.elapsed();
    let d = datastore(&h, "small").await;
    eprintln!(
        "history: NOSPACE after {n} rewrites of 1 MiB ({took:?}); the tenant saw `{}`; it wrote \
         again {back:?} after the alarm; kamajid: {}",
        seen.stderr.trim(),
        d.last_upkeep_event
    );
    assert!(
        d.last_upkeep_event.contains("recovered from NOSPACE"),
        "{d:?}"
    );
    assert!(d.alarms.is_empty() && d.compacted_revision > 0, "{d:?}");
    assert_eq!(d.phase, v1::DatastorePhase::Ready as i32);
    admin.must(&["get", "configmap", "before"]);

    // 2. Live data (keys of no tenant) fills it: nothing to compact away. The datastore says
    // so and takes no tenant, its tenant is Degraded, until the data goes. A writer that keeps
    // writing: where compaction and defragmentation leave the file under 90 % of the quota
    // (bbolt's free pages vary), kamajid disarms and the writer fills it again.
    let mut n = 0;
    for round in 0..5u32 {
        let (k, _, refusal) = fill(&mut root_c, 1 << 20, |i| format!("live/{round}/{i}")).await;
        assert!(refusal.contains("space exceeded"), "{refusal}");
        n += k;
        // Until kamajid says Alarm (done) or takes writes again (fill again).
        let start = Instant::now();
        loop {
            if datastore(&h, "small").await.phase == v1::DatastorePhase::Alarm as i32 {
                break;
            }
            if root_c.put("probe", "x", None).await.is_ok() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "NOSPACE neither recovered nor reported:\n{}",
                h.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if datastore(&h, "small").await.phase == v1::DatastorePhase::Alarm as i32 {
            eprintln!(
                "live data: the datastore is in Alarm after {} fills",
                round + 1
            );
            break;
        }
    }
    let degraded = until_tenant(&h, "t", 60, "Degraded", |st| {
        st.phase == v1::TenantClusterPhase::Degraded as i32
    })
    .await;
    let st = tenant(&h, "t").await.status.unwrap();
    let c = st
        .conditions
        .iter()
        .find(|c| c.r#type == "DatastoreWritable")
        .cloned()
        .expect("DatastoreWritable");
    let d = datastore(&h, "small").await;
    eprintln!(
        "live data: NOSPACE after {n} keys of 1 MiB; the tenant was Degraded {degraded:?} \
         after; it says `{}`; the datastore is {:?}: {}",
        c.message, d.phase, d.message
    );
    assert!(
        c.message.contains("NOSPACE") && c.message.contains("drain"),
        "{c:?}"
    );
    assert_eq!(d.phase, v1::DatastorePhase::Alarm as i32);
    assert!(
        !d.alarms.is_empty() && d.alarms[0].starts_with("NOSPACE"),
        "{d:?}"
    );
    // Terraform shows it; a new tenant is not placed there.
    w.tf(&["apply", "-refresh-only", "-auto-approve"]);
    let v = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    assert_eq!(v["status"], "Degraded");
    assert!(
        v["status_message"]
            .as_str()
            .unwrap()
            .contains("DatastoreWritable"),
        "{v:#}"
    );
    let dv = w.resource("kamaji_datastore.a")["values"].clone();
    assert_eq!(dv["status"], "Alarm");
    w.write(&format!("{base}\n{}", tenant_hcl("u")));
    let r = w.apply();
    assert!(
        !r.ok() && r.output().contains("not Ready"),
        "{}",
        r.output()
    );
    w.write(&base);

    // The data goes: recovered by itself, the tenant Ready again.
    root_c
        .delete(
            "live/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let ready = until_tenant(&h, "t", 120, "Ready again", |st| {
        st.phase == v1::TenantClusterPhase::Ready as i32
    })
    .await;
    let d = datastore(&h, "small").await;
    eprintln!(
        "the data deleted: Ready again after {ready:?}; {}",
        d.last_upkeep_event
    );
    assert_eq!(d.phase, v1::DatastorePhase::Ready as i32);
    admin.eventually(&["create", "configmap", "later"], 30);
    let plan = w.plan_code();
    assert_eq!(plan.code, 0, "{}", plan.output());
}
