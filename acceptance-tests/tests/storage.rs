//! Operating the etcd pool on the real programs: what each tenant keeps in a shared etcd, as
//! kamajid measures it, against a scan of the shard with its root certificate; and a tenant's
//! storage quota, enforced by the real kube-apiserver (built from the `k8s.io/kubernetes`
//! module, run by kamajid's process runtime) while its neighbour on the same shard is unaffected.
//! Driven through the real terraform (or tofu) CLI and kubectl.

use std::time::{Duration, Instant};

use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::*;
use kamaji_proto::v1;

fn config(ds: &DatastoreHcl, version: &str, quota: Option<i64>) -> String {
    let quota = quota
        .map(|q| format!("  storage_quota_bytes = {q}\n"))
        .unwrap_or_default();
    format!(
        r#"{PROVIDER_HCL}
{ds}
resource "kamaji_tenant_cluster" "full" {{
  name               = "full"
  kubernetes_version = "{version}"
  datastore          = kamaji_datastore.a.name
{quota}  network {{}}
}}

resource "kamaji_tenant_cluster" "calm" {{
  name               = "calm"
  kubernetes_version = "{version}"
  datastore          = kamaji_datastore.a.name
  network {{}}
}}
"#,
        ds = ds.render(),
    )
}

async fn tenant(h: &Harness, name: &str) -> v1::TenantCluster {
    h.tenants()
        .await
        .get_tenant_cluster(v1::GetTenantClusterRequest { name: name.into() })
        .await
        .expect("get tenant")
        .into_inner()
}

/// (bytes, keys) kamajid reports for `name`, once measured.
async fn reported(h: &Harness, name: &str) -> (i64, i64) {
    let start = Instant::now();
    loop {
        let st = tenant(h, name).await.status.unwrap_or_default();
        if let (Some(b), Some(k)) = (st.storage_used_bytes, st.storage_keys) {
            return (b, k);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name} was never measured"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// (bytes, keys) under `/<uid>/`, read whole with the shard's root certificate.
async fn scanned(h: &Harness, endpoint: &str, uid: &str) -> (i64, i64) {
    let mut c = h.shard_root(endpoint).await;
    let r = c
        .get(
            format!("/{uid}/"),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("scan");
    (
        r.kvs()
            .iter()
            .map(|kv| (kv.key().len() + kv.value().len()) as i64)
            .sum(),
        r.kvs().len() as i64,
    )
}

fn quota_condition(tc: &v1::TenantCluster) -> Option<v1::Condition> {
    tc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == "StorageQuotaExceeded")
        .cloned()
}

fn exceeded(tc: &v1::TenantCluster) -> bool {
    quota_condition(tc).is_some_and(|c| c.status == v1::ConditionStatus::True as i32)
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_is_measured_and_a_tenant_over_its_quota_refuses_new_objects_until_it_deletes() {
    let root = tempfile::tempdir().unwrap();
    let (h, tenants_dir, _) = Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 0).await;
    let _reaper = Reaper(tenants_dir);
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    let version = k8s::newest();
    let w = h.workdir("storage");
    w.write(&config(&ds, &version, None));
    w.must_apply();

    // 1. Usage: what kamajid reports is what the shard holds under each tenant's prefix.
    let full = w.resource("kamaji_tenant_cluster.full")["values"].clone();
    let uid = full["uid"].as_str().unwrap().to_owned();
    let calm_uid = w.resource("kamaji_tenant_cluster.calm")["values"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let start = Instant::now();
    let (used, keys) = loop {
        // The control planes keep writing (leases, events): compare until a quiet moment.
        let got = reported(&h, "full").await;
        let want = scanned(&h, &shard.endpoint, &uid).await;
        if got.1 == want.1 && (got.0 - want.0).abs() * 100 <= want.0 {
            break got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "kamajid reports {got:?} (bytes, keys), the shard holds {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        keys > 50 && used > 10_000,
        "a fresh cluster: {used} B, {keys} keys"
    );
    let st = tenant(&h, "full").await.status.unwrap();
    assert_eq!(
        st.storage_quota_bytes,
        64 << 20,
        "the default quota is the reservation"
    );
    let calm = scanned(&h, &shard.endpoint, &calm_uid).await;
    let d = h
        .client()
        .await
        .get_datastore(v1::GetDatastoreRequest {
            name: "shard".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert!(
        d.storage_keys.is_some_and(|k| k >= keys + calm.1 - 20),
        "the datastore's total counts both tenants: {d:?}"
    );
    // Terraform shows them after a refresh.
    w.tf(&["apply", "-refresh-only", "-auto-approve"]);
    let v = w.resource("kamaji_tenant_cluster.full")["values"].clone();
    assert!(
        v["storage_used_bytes"].as_i64().is_some_and(|b| b > 10_000),
        "{v:#}"
    );
    assert!(v["storage_keys"].as_i64().is_some_and(|k| k > 50), "{v:#}");
    let dv = w.resource("kamaji_datastore.a")["values"].clone();
    assert!(
        dv["storage_used_bytes"].as_i64().is_some_and(|b| b > used),
        "{dv:#}"
    );

    // 2. A quota half a MiB above what it keeps, set in place.
    let quota = (used + 512 * 1024).max(1024 * 1024);
    w.write(&config(&ds, &version, Some(quota)));
    let plan = w.plan_json();
    assert_eq!(
        planned_actions(&plan)["kamaji_tenant_cluster.full"],
        ["update"],
        "a quota changes in place"
    );
    w.must_apply();
    assert_eq!(
        tenant(&h, "full").await.status.unwrap().storage_quota_bytes,
        quota
    );

    // 3. Fill it with 100 KiB ConfigMaps until the apiserver refuses one, with the message.
    let admin = Kubectl::new(
        &w.dir.join("full.kubeconfig"),
        full["admin_kubeconfig"].as_str().unwrap(),
    );
    let calm_admin = Kubectl::new(
        &w.dir.join("calm.kubeconfig"),
        w.resource("kamaji_tenant_cluster.calm")["values"]["admin_kubeconfig"]
            .as_str()
            .unwrap(),
    );
    let blob = w.dir.join("blob");
    std::fs::write(&blob, "0123456789abcdef".repeat(6400)).unwrap();
    let file = format!("data={}", blob.display());
    let room = (quota - used) / (100 * 1024);
    let mut created = 0;
    let refusal = loop {
        let r = admin.run(&[
            "create",
            "configmap",
            &format!("fill-{created}"),
            "--from-file",
            &file,
        ]);
        if !r.ok {
            break format!("{}{}", r.stdout, r.stderr);
        }
        created += 1;
        // The neighbour on the same shard keeps creating throughout.
        calm_admin.must(&["create", "configmap", &format!("calm-{created}")]);
        assert!(
            created <= room + 30,
            "{created} ConfigMaps of 100 KiB created into {} KiB of room, none refused",
            (quota - used) / 1024
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        created >= room.saturating_sub(2),
        "refused early: {created} of {room}: {refusal}"
    );
    eprintln!(
        "fresh cluster: {used} B in {keys} keys; quota {quota} B; {created} ConfigMaps of 100 KiB \
         created into room for {room} before the first refusal"
    );
    assert!(
        refusal.contains("kamaji-storage-quota")
            && refusal.contains(&format!("storage quota of {quota} bytes")),
        "{refusal}"
    );
    let tc = tenant(&h, "full").await;
    assert!(exceeded(&tc), "{:?}", quota_condition(&tc));
    assert_eq!(
        tc.status.as_ref().unwrap().phase,
        v1::TenantClusterPhase::Ready as i32,
        "the cluster keeps running"
    );
    w.tf(&["apply", "-refresh-only", "-auto-approve"]);
    let v = w.resource("kamaji_tenant_cluster.full")["values"].clone();
    assert_eq!(v["status"], "Ready");
    assert!(
        v["status_message"]
            .as_str()
            .is_some_and(|m| m.starts_with("StorageQuotaExceeded:")),
        "{v:#}"
    );

    // Over quota: no Namespace either; reads, updates, reviews and deletes still work; the
    // neighbour is unaffected.
    let r = admin.run(&["create", "namespace", "more"]);
    assert!(!r.ok && r.stderr.contains("storage quota"), "{}", r.stderr);
    admin.must(&["get", "configmaps"]);
    admin.must(&["label", "configmap", "fill-0", "checked=yes"]);
    assert_eq!(
        admin.must(&["auth", "can-i", "create", "pods"]).trim(),
        "yes"
    );
    calm_admin.must(&["create", "namespace", "more"]);
    assert!(!exceeded(&tenant(&h, "calm").await));
    for i in 0..created {
        admin.must(&["delete", "configmap", &format!("fill-{i}"), "--wait=false"]);
    }

    // 4. Back under: lifted by itself.
    let start = Instant::now();
    loop {
        if admin.run(&["create", "configmap", "after"]).ok {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "still refused after deleting back under the quota"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let tc = tenant(&h, "full").await;
    let c = quota_condition(&tc).unwrap();
    assert_eq!(c.status, v1::ConditionStatus::False as i32, "{c:?}");
    assert!(
        c.message.contains(&format!("quota of {quota} bytes")),
        "{c:?}"
    );
    let plan = w.plan_code();
    assert_eq!(
        plan.code,
        0,
        "plan after it all is empty:\n{}",
        plan.output()
    );

    // Destroy leaves nothing of either tenant on the shard.
    assert!(w.tf(&["destroy", "-auto-approve"]).ok());
    let (users, roles, keys) = h.shard_leftovers(&shard.endpoint).await;
    assert!(
        users.is_empty() && roles.is_empty() && keys == 0,
        "{users:?} {roles:?} {keys}"
    );
}
