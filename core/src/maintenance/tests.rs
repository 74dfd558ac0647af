use super::*;
use crate::controlplane::testing;
use crate::spec::ServiceType;
use crate::tenant::{UpgradeRecord, WireSpec};
use kamaji_model::maintenance::{exclusion, window};

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

/// Unix seconds of an RFC 3339 time.
fn at(s: &str) -> i64 {
    kamaji_model::maintenance::timestamp("t", s).unwrap()
}

fn served(list: &[&str]) -> Served {
    Served::new(list.iter().map(|s| v(s)).collect(), STABLE_AFTER_PATCHES)
}

fn saturday_night() -> Maintenance {
    Maintenance {
        channel: ReleaseChannel::Stable,
        // 22:00 UTC for 4 hours on Saturdays: into Sunday 02:00.
        window: Some(window("w", "22:00", 4, &["saturday".into()]).unwrap()),
        exclusions: vec![],
    }
}

#[test]
fn channels_choose_the_newest_served_patch_or_a_stable_next_minor() {
    let s = served(&["1.36.3", "1.36.5", "1.37.0", "1.37.1", "1.37.2", "1.38.1"]);
    assert_eq!(target(ReleaseChannel::None, v("1.36.3"), &s), None);
    assert_eq!(
        target(ReleaseChannel::Patch, v("1.36.3"), &s),
        Some(v("1.36.5"))
    );
    // One minor at a time, to its newest patch, once it has reached the threshold (.2).
    assert_eq!(
        target(ReleaseChannel::Stable, v("1.36.3"), &s),
        Some(v("1.37.2"))
    );
    // 1.38 has only reached .1: not stable yet, and 1.37.2 is the newest 1.37.
    assert_eq!(target(ReleaseChannel::Stable, v("1.37.2"), &s), None);
    assert_eq!(
        target(ReleaseChannel::Stable, v("1.37.0"), &s),
        Some(v("1.37.2"))
    );
    // Never down, never two minors.
    assert_eq!(target(ReleaseChannel::Patch, v("1.36.9"), &s), None);
    assert_eq!(target(ReleaseChannel::Stable, v("1.34.1"), &s), None);
    assert_eq!(
        target(ReleaseChannel::Stable, v("1.35.1"), &s),
        Some(v("1.36.5"))
    );
    let lenient = Served::new(s.versions().to_vec(), 1);
    assert_eq!(
        target(ReleaseChannel::Stable, v("1.37.2"), &lenient),
        Some(v("1.38.1"))
    );
}

#[test]
fn a_window_holds_its_days_and_runs_past_midnight() {
    let m = saturday_night();
    let w = m.window.as_ref();
    // 2026-12-05 is a Saturday.
    assert!(!in_window(w, at("2026-12-05T21:59:59Z")));
    assert!(in_window(w, at("2026-12-05T22:00:00Z")));
    assert!(in_window(w, at("2026-12-06T01:59:59Z")), "Sunday morning");
    assert!(!in_window(w, at("2026-12-06T02:00:00Z")));
    assert!(!in_window(w, at("2026-12-06T22:30:00Z")), "Sunday night");
    assert!(in_window(None, at("2026-12-06T22:30:00Z")), "no window");
    let every_day = window("w", "00:00", 24, &[]).unwrap();
    assert!(in_window(Some(&every_day), at("2026-12-09T13:00:00Z")));
}

#[test]
fn exclusions_block_what_their_scope_says() {
    let mut m = saturday_night();
    m.exclusions = vec![exclusion(
        "x",
        "freeze",
        "2026-12-05T00:00:00Z",
        "2026-12-06T01:00:00Z",
        "no_minor_upgrades",
    )
    .unwrap()];
    let t = at("2026-12-05T23:00:00Z");
    assert_eq!(open(&m, t, true), Err(Closed::Excluded("freeze".into())));
    assert_eq!(open(&m, t, false), Ok(()), "patches still go");
    // The minor waits for the exclusion's end, inside the same window.
    assert_eq!(next_opening(&m, t, true), Some(at("2026-12-06T01:00:00Z")));
    assert_eq!(
        open(&m, at("2026-12-06T03:00:00Z"), false),
        Err(Closed::OutsideWindow)
    );
}

#[test]
fn the_next_opening_is_the_next_window_not_excluded() {
    let mut m = saturday_night();
    let sunday_noon = at("2026-12-06T12:00:00Z");
    assert_eq!(
        next_opening(&m, sunday_noon, false),
        Some(at("2026-12-12T22:00:00Z"))
    );
    m.exclusions = vec![exclusion(
        "x",
        "holidays",
        "2026-12-12T00:00:00Z",
        "2027-01-04T00:00:00Z",
        "",
    )
    .unwrap()];
    assert_eq!(
        next_opening(&m, sunday_noon, false),
        Some(at("2027-01-09T22:00:00Z"))
    );
    let p = planned(
        &m,
        v("1.36.3"),
        &served(&["1.37.2"]),
        at("2026-12-20T12:00:00Z"),
    )
    .unwrap();
    assert_eq!(p.to, v("1.37.2"));
    assert_eq!(p.not_before, Some(at("2027-01-09T22:00:00Z")));
    assert_eq!(p.waiting_for.as_deref(), Some("holidays"));
    m.channel = ReleaseChannel::None;
    assert_eq!(planned(&m, v("1.36.3"), &served(&["1.37.2"]), 0), None);
}

fn tenant(name: &str, ds: &str, running: &str, m: &Maintenance) -> (TenantRecord, TenantSpec) {
    let mut rec = TenantRecord::new(
        crate::ids::TenantName::parse(name).unwrap(),
        WireSpec::default(),
        1,
        0,
    );
    rec.datastore = Some(DatastoreName::parse(ds).unwrap());
    rec.phase = Phase::Ready;
    rec.current_version = Some(running.into());
    let mut spec = testing::spec(ServiceType::ClusterIp);
    spec.kubernetes_version = v(running);
    spec.maintenance = m.clone();
    (rec, spec)
}

/// Two weeks of kamajid rounds, one a minute, on an injected clock: six tenants on two
/// datastores, each upgrade taking 7 minutes. Every upgrade starts inside the window and
/// outside the exclusion, never two on one datastore at once, and all end on the target.
#[test]
fn a_fleet_upgrades_inside_its_windows_one_tenant_of_a_datastore_at_a_time() {
    let mut m = saturday_night();
    // The first Saturday night is frozen for minors.
    m.exclusions = vec![exclusion(
        "x",
        "release-week",
        "2026-12-05T00:00:00Z",
        "2026-12-06T06:00:00Z",
        "no_minor_upgrades",
    )
    .unwrap()];
    let s = served(&["1.36.3", "1.37.2"]);
    let mut fleet: Vec<(TenantRecord, TenantSpec)> = ["a1", "a2", "a3", "b1", "b2", "b3"]
        .iter()
        .map(|n| tenant(n, &format!("shard-{}", &n[..1]), "1.36.3", &m))
        .collect();
    // One tenant opts out; one is asleep.
    fleet[2].1.maintenance.channel = ReleaseChannel::None;
    fleet[5].1.hibernated = true;
    fleet[5].0.phase = Phase::Hibernated;
    let start = at("2026-12-04T00:00:00Z");
    let mut started: Vec<(String, String, i64)> = Vec::new();
    for minute in 0..14 * 24 * 60 {
        let now = start + minute * 60;
        // Upgrades in flight finish after 7 minutes.
        for (rec, spec) in fleet.iter_mut() {
            if let Some(u) = rec.last_upgrade.as_mut().filter(|u| u.finished_at == 0) {
                if now - u.started_at >= 7 * 60 {
                    u.finished_at = now;
                    rec.current_version = Some(u.to.clone());
                    rec.phase = Phase::Ready;
                    spec.kubernetes_version = desired(rec, spec);
                }
            }
        }
        let view: Vec<_> = fleet
            .iter()
            .map(|(r, s)| (r.clone(), Some(s.clone())))
            .collect();
        for (name, to) in due_upgrades(&view, &s, now) {
            let (rec, _) = fleet.iter_mut().find(|(r, _)| r.name == name).unwrap();
            assert!(
                open(&m, now, true).is_ok(),
                "{name} started at {now}, outside its window or excluded"
            );
            rec.auto_version = Some(to.to_string());
            rec.phase = Phase::Upgrading;
            rec.last_upgrade = Some(UpgradeRecord {
                from: rec.current_version.clone().unwrap(),
                to: to.to_string(),
                automatic: true,
                started_at: now,
                finished_at: 0,
            });
            started.push((
                name.to_string(),
                rec.datastore.clone().unwrap().to_string(),
                now,
            ));
        }
    }
    let names: Vec<_> = started.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names.len(), 4, "{started:?}");
    for shard in ["shard-a", "shard-b"] {
        let times: Vec<i64> = started
            .iter()
            .filter(|(_, d, _)| d == shard)
            .map(|(_, _, t)| *t)
            .collect();
        assert!(
            times.windows(2).all(|w| w[1] - w[0] >= 7 * 60),
            "{shard}: upgrades overlapped: {times:?}"
        );
    }
    // Not on the excluded Saturday: on the next one, 22:00 and 7 minutes later per shard.
    let first = started.iter().map(|(_, _, t)| *t).min().unwrap();
    assert_eq!(first, at("2026-12-12T22:00:00Z"));
    for (rec, _) in &fleet {
        let want = match rec.name.as_str() {
            "a3" | "b3" => "1.36.3",
            _ => "1.37.2",
        };
        assert_eq!(rec.current_version.as_deref(), Some(want), "{}", rec.name);
    }
}

#[test]
fn an_upgrade_in_flight_holds_back_its_datastore_only() {
    let m = Maintenance {
        channel: ReleaseChannel::Patch,
        ..Default::default()
    };
    let s = served(&["1.37.1", "1.37.2"]);
    let mut busy = tenant("a", "one", "1.37.1", &m);
    busy.0.last_upgrade = Some(UpgradeRecord {
        from: "1.36.3".into(),
        to: "1.37.1".into(),
        automatic: false,
        started_at: 1,
        finished_at: 0,
    });
    let view: Vec<_> = [
        busy,
        tenant("b", "one", "1.37.1", &m),
        tenant("d", "two", "1.37.1", &m),
        tenant("c", "two", "1.37.1", &m),
    ]
    .into_iter()
    .map(|(r, s)| (r, Some(s)))
    .collect();
    let due = due_upgrades(&view, &s, 0);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].0.as_str(), "c");
    assert_eq!(due[0].1, v("1.37.2"));
}
