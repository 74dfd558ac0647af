//! Draining a datastore: which of its tenants to move off now. Pure; the leader's loop
//! ([`super::Lifecycle::run`]) marks them evicted and their lifecycle moves them
//! ([`super::steps::MOVE`]).
//!
//! A few at a time per datastore (kamajid's `--drain-parallel`, [`DRAIN_PARALLEL`] by default):
//! each move holds its tenant's writes for
//! seconds and restarts its apiserver, so a drain must not do that to every tenant at once.
//! Tenants whose spec names the datastore stay (the user pinned them there), and so do
//! hibernated ones (a move restarts the control plane on its target); a tenant that fit
//! nowhere last time is tried again after [`NO_ROOM_RETRY_SECONDS`].

use std::collections::BTreeSet;

use crate::ids::{DatastoreName, TenantName};
use crate::spec::{Placement, TenantSpec};
use crate::tenant::{Phase, TenantRecord, COND_MOVED};

/// Tenants of one datastore moving off it at the same time, by default.
pub const DRAIN_PARALLEL: usize = 2;
/// How long a tenant that fit nowhere waits before it is tried again.
pub const NO_ROOM_RETRY_SECONDS: i64 = 15;

/// Whether `rec` (with `spec`) stays on its datastore whatever a drain asks: its spec names it.
pub fn pinned(rec: &TenantRecord, spec: &TenantSpec) -> bool {
    matches!(&spec.placement, Placement::Named(n) if Some(n) == rec.datastore.as_ref())
}

/// The tenants to evict now from the `draining` datastores, given every tenant and its spec:
/// as many per datastore as keep `parallel` of its tenants moving off.
pub fn evictions(
    tenants: &[(TenantRecord, Option<TenantSpec>)],
    draining: &BTreeSet<DatastoreName>,
    parallel: usize,
    now: i64,
) -> Vec<TenantName> {
    let mut out = Vec::new();
    for ds in draining {
        let on = |t: &TenantRecord| t.datastore.as_ref() == Some(ds);
        let busy = tenants
            .iter()
            .filter(|(t, _)| t.moving.as_ref().is_some_and(|m| &m.from == ds) || (on(t) && t.evict))
            .count();
        let mut eligible: Vec<_> = tenants
            .iter()
            .filter(|(t, spec)| {
                on(t)
                    && !t.deleting
                    && !t.evict
                    && t.moving.is_none()
                    && t.phase != Phase::Failed
                    && spec
                        .as_ref()
                        .is_some_and(|s| !pinned(t, s) && !s.hibernated)
                    && !t.condition(COND_MOVED).is_some_and(|c| {
                        c.reason == "NoRoom" && now - c.since < NO_ROOM_RETRY_SECONDS
                    })
            })
            .map(|(t, _)| t.name.clone())
            .collect();
        eligible.sort();
        out.extend(eligible.into_iter().take(parallel.saturating_sub(busy)));
    }
    out
}

/// What a draining datastore `ds` still holds and why, for its status: empty once it holds no
/// tenant.
pub fn report(ds: &DatastoreName, tenants: &[(TenantRecord, Option<TenantSpec>)]) -> String {
    let mut lines = Vec::new();
    for (t, spec) in tenants {
        if let Some(m) = t.moving.as_ref().filter(|m| &m.from == ds) {
            lines.push(format!("{} is moving to {}", t.name, m.to));
            continue;
        }
        if t.datastore.as_ref() != Some(ds) {
            continue;
        }
        let why = if spec.as_ref().is_some_and(|s| pinned(t, s)) {
            format!("{} stays: its datastore attribute names {ds}", t.name)
        } else if spec.as_ref().is_some_and(|s| s.hibernated) {
            format!(
                "{} stays while hibernated: wake it (hibernated = false) to move it",
                t.name
            )
        } else if let Some(c) = t
            .condition(COND_MOVED)
            .filter(|c| !c.ok && c.reason == "NoRoom")
        {
            format!("{}: {}", t.name, c.message)
        } else {
            format!("{} waits its turn", t.name)
        };
        lines.push(why);
    }
    if lines.is_empty() {
        return String::new();
    }
    lines.sort();
    format!(
        "draining: {} tenant cluster(s) left: {}",
        lines.len(),
        lines.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controlplane::testing::spec;
    use crate::spec::ServiceType;
    use crate::tenant::WireSpec;

    fn on(name: &str, ds: &str) -> TenantRecord {
        let mut t = TenantRecord::new(TenantName::parse(name).unwrap(), WireSpec::default(), 1, 0);
        t.datastore = Some(DatastoreName::parse(ds).unwrap());
        t.phase = Phase::Ready;
        t
    }

    #[test]
    fn a_drain_moves_a_few_at_a_time_and_leaves_pinned_and_recently_stuck_tenants() {
        let any = spec(ServiceType::ClusterIp);
        let mut pinned_spec = any.clone();
        pinned_spec.placement = Placement::Named(DatastoreName::parse("a").unwrap());
        let draining: BTreeSet<_> = [DatastoreName::parse("a").unwrap()].into();
        let mut asleep = any.clone();
        asleep.hibernated = true;
        let mut stuck = on("d-stuck", "a");
        stuck.set_condition(COND_MOVED, false, "NoRoom", "no datastore", 100);
        let tenants = vec![
            (on("c", "a"), Some(any.clone())),
            (on("b", "a"), Some(any.clone())),
            (on("a", "a"), Some(any.clone())),
            (on("pinned", "a"), Some(pinned_spec)),
            (on("asleep", "a"), Some(asleep)),
            (on("elsewhere", "b"), Some(any.clone())),
            (stuck, Some(any.clone())),
        ];
        let names = |v: Vec<TenantName>| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(evictions(&tenants, &draining, 2, 110)), ["a", "b"]);
        // One already on its way: one more.
        let mut busy = tenants.clone();
        busy[2].0.evict = true;
        assert_eq!(names(evictions(&busy, &draining, 2, 110)), ["b"]);
        // The operator's bound: one at a time, or more.
        assert_eq!(
            names(evictions(&busy, &draining, 1, 110)),
            Vec::<String>::new()
        );
        assert_eq!(
            names(evictions(&tenants, &draining, 3, 110)),
            ["a", "b", "c"]
        );
        // The stuck one is tried again once its wait is over; the pinned one never.
        let later: Vec<_> = tenants
            .iter()
            .filter(|(t, _)| {
                t.name.as_str() != "a" && t.name.as_str() != "b" && t.name.as_str() != "c"
            })
            .cloned()
            .collect();
        assert_eq!(
            names(evictions(&later, &draining, 2, 110)),
            Vec::<String>::new()
        );
        assert_eq!(names(evictions(&later, &draining, 2, 200)), ["d-stuck"]);
        let r = report(&DatastoreName::parse("a").unwrap(), &later);
        assert!(r.starts_with("draining: 3 tenant cluster(s) left"), "{r}");
        assert!(
            r.contains("d-stuck: no datastore")
                && r.contains("pinned stays")
                && r.contains("asleep stays while hibernated"),
            "{r}"
        );
    }
}
