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
    let mut c = h
        .shard_root(endpoint)
        .await
        .kv_client()
        .max_decoding_message_size(256 << 20);
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
    // The first refusal may come from etcd (the hard wall, the moment the quota is passed), the
    // following ones from the policy inside the cluster, which names the quota.
    let mut first_refusal = None;
    let refusal = loop {
        let r = admin.run(&[
            "create",
            "configmap",
            &format!("fill-{created}"),
            "--from-file",
            &file,
        ]);
        if !r.ok {
            let msg = format!("{}{}", r.stdout, r.stderr);
            first_refusal.get_or_insert_with(|| (created, Instant::now(), msg.clone()));
            if msg.contains("kamaji-storage-quota") {
                break msg;
            }
            let (_, at, _) = first_refusal.as_ref().unwrap();
            assert!(
                at.elapsed() < Duration::from_secs(30),
                "refused without the policy's message for 30 s: {msg}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
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
    let (refused_at, since, first) = first_refusal.unwrap();
    assert!(
        created >= room.saturating_sub(2),
        "refused early: {created} of {room}: {refusal}"
    );
    eprintln!(
        "fresh cluster: {used} B in {keys} keys; quota {quota} B; {created} ConfigMaps of 100 KiB \
         created into room for {room} before the first refusal (the {refused_at}th: {}); the \
         policy's message {:?} after it",
        first.trim(),
        since.elapsed()
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

    // Over quota: no Namespace either, no update (it could grow an object); reads, reviews and
    // deletes still work; the neighbour is unaffected.
    let r = admin.run(&["create", "namespace", "more"]);
    assert!(!r.ok && r.stderr.contains("storage quota"), "{}", r.stderr);
    admin.must(&["get", "configmaps"]);
    let r = admin.run(&["label", "configmap", "fill-0", "checked=yes"]);
    assert!(!r.ok && r.stderr.contains("storage quota"), "{}", r.stderr);
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

mod moves {
    use super::*;
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
    use std::sync::{Arc, Mutex};

    fn config(a: &DatastoreHcl, b: &DatastoreHcl, on: &str, version: &str) -> String {
        format!(
            r#"{PROVIDER_HCL}
{a}
{b}
resource "kamaji_tenant_cluster" "mover" {{
  name               = "mover"
  kubernetes_version = "{version}"
  datastore          = kamaji_datastore.{on}.name
  network {{}}
}}
"#,
            a = a.render(),
            b = b.render(),
        )
    }

    /// What a client-go reflector does, recorded: list, watch from the list's resourceVersion,
    /// on a closed watch watch again from the last resourceVersion seen, on "410 Gone" list
    /// again. Every resourceVersion it is handed, in order, and every error.
    #[derive(Default)]
    struct Seen {
        versions: Vec<(String, u64)>,
        errors: Vec<String>,
        relists: usize,
    }

    async fn reflect(api: Api<ConfigMap>, seen: Arc<Mutex<Seen>>, stop: Arc<tokio::sync::Notify>) {
        let rv_of = |cm: &ConfigMap| {
            cm.metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let mut rv = String::new();
        loop {
            if rv.is_empty() {
                match api.list(&ListParams::default()).await {
                    Ok(l) => {
                        rv = l.metadata.resource_version.clone().unwrap_or_default();
                        let mut s = seen.lock().unwrap();
                        s.relists += 1;
                        s.versions.push(("list".into(), rv.parse().unwrap_or(0)));
                    }
                    Err(e) => {
                        seen.lock().unwrap().errors.push(format!("list: {e}"));
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        continue;
                    }
                }
            }
            let wp = WatchParams::default().timeout(290);
            let stream = match api.watch(&wp, &rv).await {
                Ok(s) => s,
                Err(e) => {
                    seen.lock().unwrap().errors.push(format!("watch: {e}"));
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(300)) => continue,
                        _ = stop.notified() => return,
                    }
                }
            };
            let mut stream = stream.boxed();
            loop {
                let next = tokio::select! {
                    n = stream.try_next() => n,
                    _ = stop.notified() => return,
                };
                match next {
                    Ok(Some(
                        WatchEvent::Added(cm) | WatchEvent::Modified(cm) | WatchEvent::Deleted(cm),
                    )) => {
                        let v = rv_of(&cm);
                        rv = v.to_string();
                        seen.lock()
                            .unwrap()
                            .versions
                            .push((cm.metadata.name.unwrap_or_default(), v));
                    }
                    Ok(Some(WatchEvent::Bookmark(b))) => rv = b.metadata.resource_version,
                    Ok(Some(WatchEvent::Error(e))) => {
                        seen.lock()
                            .unwrap()
                            .errors
                            .push(format!("{} {}", e.code, e.message));
                        if e.code == 410 {
                            rv.clear();
                        }
                        break;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        seen.lock().unwrap().errors.push(format!("stream: {e}"));
                        break;
                    }
                }
            }
        }
    }

    async fn revision(h: &Harness, endpoint: &str) -> i64 {
        h.shard_root(endpoint)
            .await
            .get("x", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_tenant_moves_in_place_with_its_objects_a_running_watch_and_its_kubeconfig() {
        let objects: usize = std::env::var("KAMAJI_MOVE_OBJECTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        let root = tempfile::tempdir().unwrap();
        let (mut h, tenants_dir, _) =
            Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 1).await;
        let _reaper = Reaper(tenants_dir);
        let sa = h.etcd("shard-a", EtcdSecurity::default()).await;
        let sb = h.etcd("shard-b", EtcdSecurity::default()).await;
        let (a, b) = (
            DatastoreHcl::new("a", "shard-a", &sa.endpoint),
            DatastoreHcl::new("b", "shard-b", &sb.endpoint),
        );
        let version = k8s::newest();
        let w = h.workdir("move");
        w.write(&config(&a, &b, "a", &version));
        w.must_apply();
        let v = w.resource("kamaji_tenant_cluster.mover")["values"].clone();
        let uid = v["uid"].as_str().unwrap().to_owned();
        let endpoint = v["endpoint"].as_str().unwrap().to_owned();
        let kubeconfig = v["admin_kubeconfig"].as_str().unwrap().to_owned();
        let client = kamajid::tenant_client::connect(&kubeconfig, &endpoint)
            .await
            .unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

        // The tenant's objects.
        let start = Instant::now();
        futures::stream::iter(0..objects)
            .map(|i| {
                let cms = cms.clone();
                async move {
                    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                        "metadata": {"name": format!("obj-{i}")},
                        "data": {"i": i.to_string(), "pad": "x".repeat(200)},
                    }))
                    .unwrap();
                    cms.create(&PostParams::default(), &cm).await.map(|_| ())
                }
            })
            .buffer_unordered(16)
            .try_collect::<()>()
            .await
            .unwrap();
        eprintln!("{objects} ConfigMaps created in {:?}", start.elapsed());
        // A Secret: stored encrypted with the tenant's key, bound to its etcd key, which a move
        // keeps (same prefix), so it must read back on the target.
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(client.clone(), "default");
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({
                    "metadata": {"name": "moved"},
                    "stringData": {"password": "kept-through-the-move"},
                }))
                .unwrap(),
            )
            .await
            .unwrap();

        // A reflector running across the move, and a writer measuring how long writes fail.
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(tokio::sync::Notify::new());
        let reflector = tokio::spawn(reflect(cms.clone(), seen.clone(), stop.clone()));
        let (src_rev, dst_rev) = (
            revision(&h, &sa.endpoint).await,
            revision(&h, &sb.endpoint).await,
        );
        assert!(
            dst_rev < src_rev,
            "the target's revision starts lower: {dst_rev} < {src_rev}"
        );
        let writer_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (cms, stop) = (cms.clone(), writer_stop.clone());
            tokio::spawn(async move {
                let (mut longest, mut failing_since, mut n) = (Duration::ZERO, None::<Instant>, 0);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                        "metadata": {"name": format!("w-{n}")}
                    }))
                    .unwrap();
                    match cms.create(&PostParams::default(), &cm).await {
                        Ok(_) => {
                            n += 1;
                            if let Some(t) = failing_since.take() {
                                longest = longest.max(t.elapsed());
                            }
                        }
                        Err(_) => {
                            failing_since.get_or_insert_with(Instant::now);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                (longest, n)
            })
        };
        let phases = {
            let h = h.tenants().await;
            let stop = writer_stop.clone();
            tokio::spawn(async move {
                let mut h = h;
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(r) = h
                        .get_tenant_cluster(v1::GetTenantClusterRequest {
                            name: "mover".into(),
                        })
                        .await
                    {
                        let p = r.into_inner().status.unwrap_or_default().phase;
                        if seen.last() != Some(&p) {
                            seen.push(p);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                seen
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;

        // The move: planned in place, applied, done when the apply returns.
        w.write(&config(&a, &b, "b", &version));
        let plan = w.plan_json();
        assert_eq!(
            planned_actions(&plan)["kamaji_tenant_cluster.mover"],
            ["update"],
            "a move is an update in place"
        );
        let start = Instant::now();
        w.must_apply();
        let took = start.elapsed();
        let moved_rev = revision(&h, &sb.endpoint).await;
        // Written after the move: the running watch must deliver it.
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "after-move"}}))
                .unwrap(),
        )
        .await
        .unwrap();
        let deadline = Instant::now();
        while !seen
            .lock()
            .unwrap()
            .versions
            .iter()
            .any(|(n, _)| n == "after-move")
        {
            assert!(
                deadline.elapsed() < Duration::from_secs(30),
                "the watch never saw after-move"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        writer_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        stop.notify_waiters();
        let (longest, writes) = writer.await.unwrap();
        let phases = phases.await.unwrap();
        let _ = reflector.await;

        let v = w.resource("kamaji_tenant_cluster.mover")["values"].clone();
        assert_eq!(v["datastore"], "shard-b");
        assert_eq!(v["status"], "Ready");
        assert!(
            phases.contains(&(v1::TenantClusterPhase::Moving as i32)),
            "status never showed Moving: {phases:?}"
        );
        let tc = tenant(&h, "mover").await;
        let moved = tc
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.r#type == "Moved")
            .cloned()
            .unwrap();
        assert_eq!(moved.status, v1::ConditionStatus::True as i32, "{moved:?}");
        eprintln!(
            "move of {objects} objects: apply {took:?}; {}; longest write outage seen by a \
             client {longest:?} ({writes} writes during the move); target revision {dst_rev} -> \
             {moved_rev}, source was {src_rev}",
            moved.message
        );

        // Keys that expire expire on the target too: the Events copied from the source are
        // bound to a lease there, with the time their lease had left.
        let events = h
            .shard_root(&sb.endpoint)
            .await
            .get(
                format!("/{uid}/events/"),
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_keys_only(),
                ),
            )
            .await
            .unwrap();
        assert!(!events.kvs().is_empty(), "no Event moved");
        let unleased: Vec<_> = events
            .kvs()
            .iter()
            .filter(|kv| kv.lease() == 0)
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect();
        assert!(
            unleased.is_empty(),
            "Events without a lease on the target: {unleased:?}"
        );

        // Objects and the admin kubeconfig from before the move: all there.
        let after = cms.list(&ListParams::default()).await.unwrap();
        let names: std::collections::HashSet<_> = after
            .items
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        for i in 0..objects {
            assert!(
                names.contains(&format!("obj-{i}")),
                "obj-{i} lost in the move"
            );
        }
        let cm = cms.get("obj-7").await.unwrap();
        assert_eq!(cm.data.unwrap()["i"], "7");
        let secret = secrets.get("moved").await.unwrap().data.unwrap();
        assert_eq!(secret["password"].0, b"kept-through-the-move");
        let raw = h
            .shard_root(&sb.endpoint)
            .await
            .get(format!("/{uid}/secrets/default/moved"), None)
            .await
            .unwrap();
        assert!(
            raw.kvs()[0].value().starts_with(b"k8s:enc:secretbox:v1:"),
            "the Secret is still encrypted on the target"
        );

        // resourceVersions only went forward, across the move, and the watch carried on.
        let (versions, errors, relists) = {
            let s = seen.lock().unwrap();
            (s.versions.clone(), s.errors.clone(), s.relists)
        };
        for pair in versions.windows(2) {
            assert!(
                pair[1].1 >= pair[0].1,
                "a resourceVersion went backwards: {:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
        let after_move = versions.iter().find(|(n, _)| n == "after-move").unwrap().1;
        assert!(after_move > src_rev as u64, "{after_move} after {src_rev}");
        assert!(
            !errors
                .iter()
                .any(|e| e.contains("Too large resource version")),
            "a client was ahead of the new datastore: {errors:?}"
        );
        eprintln!(
            "the watch: {} events, {relists} lists, errors {errors:?}",
            versions.len()
        );

        // Nothing of the tenant is left on the source; the target holds it.
        let (users, roles, keys) = h.shard_leftovers(&sa.endpoint).await;
        assert!(
            users.is_empty() && roles.is_empty() && keys == 0,
            "{users:?} {roles:?} {keys}"
        );
        assert!(scanned(&h, &sb.endpoint, &uid).await.1 as usize > objects);
        let plan = w.plan_code();
        assert_eq!(
            plan.code,
            0,
            "plan after the move is empty:\n{}",
            plan.output()
        );

        // Back to a, with kamajid killed (SIGKILL) and restarted while the move runs: it resumes
        // from what it recorded and ends on a with everything, nothing left on b.
        let mut spec = tenant(&h, "mover").await.spec.unwrap();
        spec.datastore = "shard-a".into();
        h.tenants()
            .await
            .update_tenant_cluster(v1::UpdateTenantClusterRequest {
                name: "mover".into(),
                spec: Some(spec),
                validate_only: false,
            })
            .await
            .unwrap();
        let mut kills = 0;
        let start = Instant::now();
        let moving = v1::TenantClusterPhase::Moving as i32;
        loop {
            let st = tenant(&h, "mover").await.status.unwrap();
            if st.phase == v1::TenantClusterPhase::Ready as i32 && st.datastore == "shard-a" {
                break;
            }
            if st.phase == moving && kills < 3 {
                tokio::time::sleep(Duration::from_millis(400 * (kills + 1))).await;
                h.restart_kamajid();
                kills += 1;
            }
            assert!(
                start.elapsed() < Duration::from_secs(240),
                "the move never finished after {kills} kills: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(kills >= 1, "kamajid was never killed mid-move");
        let after = cms.list(&ListParams::default()).await.unwrap();
        assert!(
            after.items.len() > objects,
            "{} objects after the move back",
            after.items.len()
        );
        let (users, roles, keys) = h.shard_leftovers(&sb.endpoint).await;
        assert!(
            users.is_empty() && roles.is_empty() && keys == 0,
            "left on b after the move back: {users:?} {roles:?} {keys}"
        );
        eprintln!("moved back to a with kamajid killed {kills} times during the move");
        w.write(&config(&a, &b, "a", &version));
        let plan = w.plan_code();
        assert_eq!(plan.code, 0, "plan after the move back:\n{}", plan.output());
        assert!(w.tf(&["destroy", "-auto-approve"]).ok());
    }
}

mod drains {
    use super::*;

    fn config(a: &str, b: &str, sa: &str, sb: &str, version: &str) -> String {
        let mut da = DatastoreHcl::new("a", "shard-a", sa);
        da.extra = a.into();
        let mut db = DatastoreHcl::new("b", "shard-b", sb);
        db.extra = b.into();
        let tenant = |name: &str| {
            format!(
                "resource \"kamaji_tenant_cluster\" \"{name}\" {{\n  name = \"{name}\"\n  \
                 kubernetes_version = \"{version}\"\n  network {{}}\n  depends_on = \
                 [kamaji_datastore.a, kamaji_datastore.b]\n}}\n"
            )
        };
        format!(
            "{PROVIDER_HCL}\n{}\n{}\n{}\n{}",
            da.render(),
            db.render(),
            tenant("one"),
            tenant("two")
        )
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

    /// Polls datastore `name` until `done` holds for its status.
    async fn until(
        h: &Harness,
        name: &str,
        what: &str,
        done: impl Fn(&v1::DatastoreStatus) -> bool,
    ) -> v1::DatastoreStatus {
        let start = Instant::now();
        loop {
            let st = datastore(h, name).await;
            if done(&st) {
                return st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "{name} never got to {what}: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_drained_datastore_empties_and_says_which_tenant_fits_nowhere_and_why() {
        let root = tempfile::tempdir().unwrap();
        let (h, tenants_dir, _) =
            Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 2).await;
        let _reaper = Reaper(tenants_dir);
        let sa = h.etcd("shard-a", EtcdSecurity::default()).await;
        let sb = h.etcd("shard-b", EtcdSecurity::default()).await;
        let version = k8s::newest();
        let w = h.workdir("drain");
        let write = |a: &str, b: &str| w.write(&config(a, b, &sa.endpoint, &sb.endpoint, &version));

        // Both tenants land on a (b takes none yet).
        write("", "  schedulable = false\n  max_tenants = 1\n");
        w.must_apply();
        for t in ["one", "two"] {
            assert_eq!(
                w.resource(&format!("kamaji_tenant_cluster.{t}"))["values"]["datastore"],
                "shard-a"
            );
        }

        // Drain a while b has room for one: one moves, the other stays and a says why.
        write("  drain = true\n", "  max_tenants = 1\n");
        w.must_apply();
        let st = until(&h, "shard-a", "one tenant left, explained", |s| {
            s.tenant_count == 1 && s.message.contains("holds its max_tenants (1)")
        })
        .await;
        eprintln!("while draining: {}", st.message);
        assert!(
            st.message.contains("one: stays") || st.message.contains("two: stays"),
            "{}",
            st.message
        );
        assert_eq!(datastore(&h, "shard-b").await.tenant_count, 1);

        // Room on b: the drain finishes by itself.
        write("  drain = true\n", "  max_tenants = 2\n");
        w.must_apply();
        until(&h, "shard-a", "empty", |s| {
            s.tenant_count == 0 && s.message.is_empty()
        })
        .await;
        let (users, roles, keys) = h.shard_leftovers(&sa.endpoint).await;
        assert!(
            users.is_empty() && roles.is_empty() && keys == 0,
            "{users:?} {roles:?} {keys}"
        );

        // Tenants that did not name a datastore: no diff after their move, and they answer.
        let plan = w.plan_code();
        assert_eq!(
            plan.code,
            0,
            "plan after the drain is empty:\n{}",
            plan.output()
        );
        w.tf(&["apply", "-refresh-only", "-auto-approve"]);
        for t in ["one", "two"] {
            let v = w.resource(&format!("kamaji_tenant_cluster.{t}"))["values"].clone();
            assert_eq!(v["datastore"], "shard-b", "{t}");
            assert_eq!(v["status"], "Ready", "{t}");
            Kubectl::new(
                &w.dir.join(format!("{t}.kubeconfig")),
                v["admin_kubeconfig"].as_str().unwrap(),
            )
            .must(&["get", "ns", "default"]);
        }
        assert!(w.tf(&["destroy", "-auto-approve"]).ok());
    }
}
