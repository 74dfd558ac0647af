//! Automatic upgrades on the real programs: terraform, a real etcd shard and real control planes
//! of the two versions tests build, run by kamajid's process runtime, which is told it serves
//! both. Two clusters on one datastore follow the `stable` channel from the older version: outside
//! their window nothing moves and `next_upgrade` says when; an exclusion holds the minor back and
//! is named; once it is lifted kamajid upgrades them, one after the other, to the newer version.
//! Their objects are kept, and the configuration, which still says the older version, plans no
//! change.

use std::time::{Duration, Instant};

use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::*;
use kamaji_proto::v1;

/// `HH:MM` (UTC) of unix second `t`, and `t` rounded down to its minute.
fn hh_mm(t: i64) -> (String, i64) {
    let d = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
    (
        format!("{:02}:{:02}", d.hour(), d.minute()),
        t - i64::from(d.second()),
    )
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn unix(rfc: &serde_json::Value) -> i64 {
    time::OffsetDateTime::parse(
        rfc.as_str().unwrap_or_else(|| panic!("not a time: {rfc}")),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp()
}

fn started(u: &v1::UpgradeRecord) -> i64 {
    u.started_at.as_ref().map(|t| t.seconds).unwrap()
}

fn finished(u: &v1::UpgradeRecord) -> i64 {
    u.finished_at.as_ref().map(|t| t.seconds).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stable_channel_upgrades_inside_the_window_one_cluster_at_a_time_and_plans_stay_empty()
{
    let (from, to) = (k8s::oldest(), k8s::newest());
    assert_ne!(from, to, "tools/k8s-build/VERSIONS needs two minors");
    let root = tempfile::tempdir().unwrap();
    // The threshold is 0 so that whichever patch of the newer minor tests build counts as stable
    // (the threshold itself is unit-tested).
    let (h, tenants_dir, _) = Harness::with_process_runtime_args(
        root.path(),
        &k8s::bin_dir(),
        0,
        vec![
            format!("--served-versions={from},{to}"),
            "--stable-after-patches=0".into(),
        ],
    )
    .await;
    let _reaper = Reaper(tenants_dir.clone());
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let config = |window: &str, exclusion: &str| {
        let tenant = |name: &str| {
            format!(
                r#"resource "kamaji_tenant_cluster" "{name}" {{
  name               = "{name}"
  kubernetes_version = "{from}"
  datastore          = kamaji_datastore.a.name
  release_channel    = "stable"
  network {{}}
{window}{exclusion}}}
"#
            )
        };
        format!(
            "{PROVIDER_HCL}\n{}\n{}{}",
            ds.render(),
            tenant("one"),
            tenant("two")
        )
    };
    let window = |start: &str, hours: u32| {
        format!("  maintenance_window {{\n    start          = \"{start}\"\n    duration_hours = {hours}\n  }}\n")
    };
    let w = h.workdir("channel");

    // Outside the window (it opens in six hours): nothing moves, and the plan of it is shown.
    let (later, opens) = hh_mm(now + 6 * 3600);
    w.write(&config(&window(&later, 1), ""));
    w.must_apply();
    let one = w.resource("kamaji_tenant_cluster.one")["values"].clone();
    assert_eq!(one["current_version"], from.as_str());
    assert_eq!(one["release_channel"], "stable");
    assert_eq!(one["next_upgrade"]["to_version"], to.as_str(), "{one:#}");
    assert_eq!(unix(&one["next_upgrade"]["not_before"]), opens, "{one:#}");
    assert!(one["last_upgrade"].is_null(), "{one:#}");
    let k = Kubectl::new(
        &w.dir.join("one.kubeconfig"),
        one["admin_kubeconfig"].as_str().unwrap(),
    );
    k.must(&["create", "configmap", "kept", "--from-literal=k=v"]);

    // Inside the window, but a freeze of minor upgrades holds: it is named, nothing moves.
    let (earlier, _) = hh_mm(now - 3600);
    let freeze = format!(
        "  maintenance_exclusion {{\n    name  = \"freeze\"\n    start = \"{}\"\n    end   = \"{}\"\n    scope = \"no_minor_upgrades\"\n  }}\n",
        rfc3339(now - 3600),
        rfc3339(now + 86_400)
    );
    w.write(&config(&window(&earlier, 3), &freeze));
    w.must_apply();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let refreshed = w.tf(&["apply", "-refresh-only", "-auto-approve", "-input=false"]);
    assert!(refreshed.ok(), "{}", refreshed.output());
    for name in ["one", "two"] {
        let t = w.resource(&format!("kamaji_tenant_cluster.{name}"))["values"].clone();
        assert_eq!(t["current_version"], from.as_str(), "{name} moved: {t:#}");
        assert_eq!(t["next_upgrade"]["waiting_for"], "freeze", "{t:#}");
    }

    // Lifted: kamajid upgrades both, one at a time.
    w.write(&config(&window(&earlier, 3), ""));
    w.must_apply();
    let mut tc = h.tenants().await;
    let start = Instant::now();
    let ups = loop {
        let mut done = Vec::new();
        for name in ["one", "two"] {
            let t = tc
                .get_tenant_cluster(v1::GetTenantClusterRequest { name: name.into() })
                .await
                .unwrap()
                .into_inner();
            let st = t.status.unwrap();
            if st.current_version == to && st.phase == v1::TenantClusterPhase::Ready as i32 {
                done.push(st.last_upgrade.expect("an upgrade is recorded"));
            }
        }
        if done.len() == 2 {
            break done;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "not both upgraded within 5 minutes; kamajid's log:\n{}",
            h.log_tail(40)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    for u in &ups {
        assert_eq!(
            (u.from_version.as_str(), u.to_version.as_str()),
            (from.as_str(), to.as_str())
        );
        assert!(u.automatic, "{u:?}");
    }
    let (a, b) = (&ups[0], &ups[1]);
    assert!(
        finished(a) <= started(b) || finished(b) <= started(a),
        "the two clusters of one datastore were upgraded at the same time: {ups:?}"
    );
    println!(
        "automatic upgrades {from} -> {to}: {} s and {} s, one after the other",
        finished(a) - started(a),
        finished(b) - started(b)
    );

    // The cluster runs the new version with its objects; the configuration, which still says
    // the older one, plans no change, and the state shows what kamajid did.
    let v: serde_json::Value =
        serde_json::from_str(&k.eventually(&["version", "-o", "json"], 90)).unwrap();
    assert_eq!(v["serverVersion"]["gitVersion"], format!("v{to}"), "{v:#}");
    assert_eq!(
        k.must(&["get", "configmap", "kept", "-o", "jsonpath={.data.k}"]),
        "v"
    );
    let plan = w.plan_code();
    assert_eq!(
        plan.code,
        0,
        "after an automatic upgrade:\n{}",
        plan.output()
    );
    let refreshed = w.tf(&["apply", "-refresh-only", "-auto-approve", "-input=false"]);
    assert!(refreshed.ok(), "{}", refreshed.output());
    let one = w.resource("kamaji_tenant_cluster.one")["values"].clone();
    assert_eq!(one["kubernetes_version"], from.as_str());
    assert_eq!(one["current_version"], to.as_str());
    assert_eq!(one["last_upgrade"]["automatic"], true, "{one:#}");
    assert_eq!(one["last_upgrade"]["to_version"], to.as_str());
    assert!(
        one["next_upgrade"].is_null(),
        "nothing newer is served: {one:#}"
    );

    // A window that is not a time of day is refused at plan, naming the attribute.
    w.write(&config(&window("25:00", 3), ""));
    let bad = w.plan_code();
    assert_eq!(bad.code, 1, "{}", bad.output());
    assert!(
        bad.output().contains("maintenance_window") && bad.output().contains("HH:MM"),
        "{}",
        bad.output()
    );
}
