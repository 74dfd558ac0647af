//! Creates that fail, through the real `terraform` CLI, a real kamajid with the process runtime
//! on the real Kubernetes binaries, and a real etcd shard: what the next `apply` and `destroy`
//! do with them, and that a tenant no datastore can take fails at once and holds nothing.

use std::path::Path;

use acceptance_tests::k8s;
use acceptance_tests::*;
use kamaji_proto::v1;

/// kamajid with the process runtime reading binaries from `bins`.
async fn harness(root: &Path, bins: &Path, slot: u16) -> (Harness, Reaper) {
    let (h, tenants, _) = Harness::with_process_runtime(root, bins, slot).await;
    (h, Reaper(tenants))
}

fn tenant(label: &str, extra: &str) -> String {
    format!(
        "resource \"kamaji_tenant_cluster\" \"{label}\" {{\n  name               = \"{label}\"\n  kubernetes_version = \"{}\"\n{extra}  depends_on         = [kamaji_datastore.a]\n}}\n",
        k8s::newest()
    )
}

/// A tenant of the newest version on whatever datastore kamajid picks.
fn plain(label: &str, extra: &str) -> String {
    tenant(label, extra).replace("  depends_on         = [kamaji_datastore.a]\n", "")
}

/// `s` with every run of whitespace (terraform's line wrapping) made one space.
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn tainted(w: &Workdir, address: &str) -> bool {
    w.resource(address)["tainted"] == true
}

async fn phase(h: &Harness, name: &str) -> Option<v1::TenantCluster> {
    h.tenants()
        .await
        .get_tenant_cluster(v1::GetTenantClusterRequest { name: name.into() })
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// A create that ran out of time leaves a tainted resource: the next apply replaces it (it used
/// to be refused as "already exists"), and destroy removes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_create_that_timed_out_is_replaced_by_the_next_apply_or_destroyed() {
    let root = tempfile::tempdir().unwrap();
    let (h, _reaper) = harness(root.path(), &k8s::bin_dir(), 0).await;
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let pool = h.workdir("pool");
    pool.write(&format!(
        "{PROVIDER_HCL}\n{}",
        DatastoreHcl::new("a", "a", &shard.endpoint).render()
    ));
    pool.must_apply();
    // Shorter than any control plane takes to answer: the creates time out.
    let short = "  timeouts {\n    create = \"1s\"\n  }\n";

    let late = h.workdir("late");
    late.write(&format!("{PROVIDER_HCL}\n{}", plain("late", short)));
    let gone = h.workdir("gone");
    gone.write(&format!("{PROVIDER_HCL}\n{}", plain("gone", short)));
    for w in [&late, &gone] {
        let r = w.apply();
        assert!(!r.ok(), "the create should have timed out:\n{}", r.output());
        assert!(
            r.output().contains("did not become Ready"),
            "{}",
            r.output()
        );
    }
    assert!(tainted(&late, "kamaji_tenant_cluster.late"));
    assert!(tainted(&gone, "kamaji_tenant_cluster.gone"));

    // The plan replaces the tainted tenant instead of refusing its name.
    let plan = late.plan_json();
    assert_eq!(
        planned_actions(&plan)["kamaji_tenant_cluster.late"],
        ["delete", "create"]
    );

    // Destroy of a tainted tenant succeeds and leaves nothing in kamajid.
    let r = gone.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "destroy:\n{}", r.output());
    assert!(
        phase(&h, "gone").await.is_none(),
        "gone is still in kamajid"
    );

    // With time enough, the configuration applies again and converges: the tainted tenant is
    // replaced by a Ready one, and the next plan is empty.
    late.write(&format!("{PROVIDER_HCL}\n{}", plain("late", "")));
    late.must_apply();
    let v = late.resource("kamaji_tenant_cluster.late");
    assert_eq!(v["values"]["status"], "Ready", "{v:#}");
    assert!(!tainted(&late, "kamaji_tenant_cluster.late"));
    assert_eq!(late.plan_code().code, 0, "re-plan not empty");
    for w in [&late, &pool] {
        let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
        assert!(r.ok(), "destroy:\n{}", r.output());
    }
}

/// A kamajid that stops answering while an apply waits for a tenant is named as it happens in
/// the provider's log (`TF_LOG`), and in the error with since when once the wait runs out (the
/// apply used to say only "Still creating..." until the timeout); back again, the next apply
/// converges.
#[tokio::test(flavor = "multi_thread")]
async fn c_a_kamajid_that_stops_answering_during_an_apply_is_named_in_the_log_and_the_error() {
    let root = tempfile::tempdir().unwrap();
    let (mut h, _reaper) = harness(root.path(), &k8s::bin_dir(), 2).await;
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let pool = h.workdir("pool");
    pool.write(&format!(
        "{PROVIDER_HCL}\n{}",
        DatastoreHcl::new("a", "a", &shard.endpoint).render()
    ));
    pool.must_apply();
    let mut w = h.workdir("dark");
    w.set_env("TF_LOG_PROVIDER", Some("INFO"));
    let config = |extra: &str| format!("{PROVIDER_HCL}\n{}", plain("dark", extra));
    w.write(&config("  timeouts {\n    create = \"40s\"\n  }\n"));
    let apply = std::thread::spawn(move || {
        let r = w.apply();
        (w, r)
    });
    // kamajid dies once the tenant is recorded, while the provider waits for it.
    let start = std::time::Instant::now();
    while phase(&h, "dark").await.is_none() {
        assert!(
            start.elapsed().as_secs() < 30,
            "the tenant was never created"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    h.stop_kamajid();
    let (w, r) = tokio::task::spawn_blocking(move || apply.join().expect("apply thread"))
        .await
        .unwrap();
    let out = r.output();
    assert!(!r.ok(), "the apply should have run out of time:\n{out}");
    assert!(
        flat(&out).contains("kamajid has not answered since"),
        "the error does not say kamajid is gone:\n{out}"
    );
    assert!(
        out.contains("kamajid does not answer; waiting for it"),
        "the provider's log does not say it as it happens:\n{out}"
    );

    h.start_kamajid();
    w.write(&config(""));
    w.must_apply();
    assert_eq!(
        w.resource("kamaji_tenant_cluster.dark")["values"]["status"],
        "Ready"
    );
    for w in [&w, &pool] {
        let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
        assert!(r.ok(), "destroy:\n{}", r.output());
    }
}

/// With no datastore that can take a tenant, its create fails at once with the reason (it used
/// to wait out the whole timeout), holds no capacity and never takes any later; a named
/// datastore without room is refused at plan.
#[tokio::test(flavor = "multi_thread")]
async fn b_a_tenant_no_datastore_can_take_fails_at_once_and_holds_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (h, _reaper) = harness(root.path(), &k8s::bin_dir(), 1).await;
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let mut ds = DatastoreHcl::new("a", "a", &shard.endpoint);
    ds.extra = "  max_tenants = 2\n".into();
    let pool = h.workdir("pool");
    pool.write(&format!("{PROVIDER_HCL}\n{}", ds.render()));
    pool.must_apply();

    let one = h.workdir("one");
    one.write(&format!("{PROVIDER_HCL}\n{}", plain("t1", "")));
    one.must_apply();

    // Two at once for the one place left: both pass the create's own check before either is
    // placed, one gets the place, the other fails at once with the reason (the default create
    // timeout is long: waiting it out would time the test out) and holds nothing.
    let race = h.workdir("race");
    race.write(&format!(
        "{PROVIDER_HCL}\n{}{}",
        plain("t2", ""),
        plain("t3", "")
    ));
    let r = race.apply();
    assert!(!r.ok(), "one of t2, t3 should not fit:\n{}", r.output());
    // Terraform wraps long messages: compare with the line breaks flattened.
    let out = flat(&r.output());
    assert!(out.contains("holds its max_tenants (2)"), "{out}");
    assert!(!out.contains("did not become Ready"), "{out}");
    let (mut ready, mut failed) = (Vec::new(), Vec::new());
    for n in ["t2", "t3"] {
        match phase(&h, n).await.and_then(|t| t.status) {
            Some(st) if st.phase == v1::TenantClusterPhase::Ready as i32 => ready.push(n),
            // Failed at placement: kept (tainted in state), unplaced.
            Some(st) => {
                assert_eq!(st.phase, v1::TenantClusterPhase::Failed as i32, "{st:?}");
                assert!(st.datastore.is_empty(), "{n} was placed: {st:?}");
                assert!(out.contains("could not be created"), "{out}");
                failed.push(n);
            }
            // Refused by the create's own check: nothing was created.
            None => assert!(out.contains("Invalid datastore"), "{out}"),
        }
    }
    assert_eq!(ready.len(), 1, "{out}");

    // Capacity frees: a failed tenant does not take it behind the user's back.
    let r = one.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "destroy:\n{}", r.output());
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    for n in &failed {
        let st = phase(&h, n).await.unwrap().status.unwrap();
        assert_eq!(st.phase, v1::TenantClusterPhase::Failed as i32, "{st:?}");
        assert!(st.datastore.is_empty(), "{n} took freed capacity: {st:?}");
    }

    // Applied again, the missing one is created (or its failed one replaced) and placed.
    race.must_apply();
    for n in ["t2", "t3"] {
        assert_eq!(
            race.resource(&format!("kamaji_tenant_cluster.{n}"))["values"]["status"],
            "Ready"
        );
    }

    // Full again, a third is refused by the create itself, with the reason and nothing kept.
    let third = h.workdir("third");
    third.write(&format!("{PROVIDER_HCL}\n{}", plain("t4", "")));
    let r = third.apply();
    assert!(!r.ok(), "t4 should not fit:\n{}", r.output());
    assert!(
        r.output().contains("holds its max_tenants (2)"),
        "{}",
        r.output()
    );
    assert!(phase(&h, "t4").await.is_none(), "t4 was created");

    // A named datastore without room is an error at plan, on `datastore`.
    let over = h.workdir("over");
    over.write(&format!(
        "{PROVIDER_HCL}\n{}",
        plain("t5", "  datastore = \"a\"\n")
    ));
    let r = over.tf(&["plan", "-input=false"]);
    assert!(!r.ok(), "plan should refuse t5:\n{}", r.output());
    assert!(points_at(&r.output(), "datastore"), "{}", r.output());
    assert!(
        r.output().contains("holds its max_tenants (2)"),
        "{}",
        r.output()
    );
    for w in [&race, &pool] {
        let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
        assert!(r.ok(), "destroy:\n{}", r.output());
    }
}
