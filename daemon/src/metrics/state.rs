//! The series read at scrape time: the datastores and the fleet of tenants.

use std::collections::BTreeMap;

use kamaji_core::placement::Candidate;
use kamaji_core::tenant::{Phase, TenantRecord};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::DatastoreLabel;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    condition: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantPhaseLabels {
    tenant: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

/// What the fleet of tenants looked like at the leader's last round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fleet {
    /// Tenants by phase (every phase present, zero included).
    pub by_phase: BTreeMap<String, i64>,
    /// Tenants by condition and its status.
    pub by_condition: BTreeMap<(String, bool), i64>,
    /// Each tenant's phase.
    pub phases: Vec<(String, String)>,
    /// Each tenant's soonest leaf-certificate expiry (unix seconds), where recorded.
    pub certificates_expire_at: Vec<(String, i64)>,
    /// Tenants moving between datastores now.
    pub moving: i64,
    /// Tenants walled off for being past a limit (storage quota or write budget).
    pub walled: i64,
}

const PHASES: [Phase; 8] = [
    Phase::Provisioning,
    Phase::Ready,
    Phase::Upgrading,
    Phase::Deleting,
    Phase::Degraded,
    Phase::Failed,
    Phase::Moving,
    Phase::Hibernated,
];

impl Fleet {
    /// The fleet's figures from the tenants' records (pure).
    pub fn of(tenants: &[TenantRecord]) -> Self {
        let mut f = Fleet {
            by_phase: PHASES.iter().map(|p| (format!("{p:?}"), 0)).collect(),
            ..Default::default()
        };
        for t in tenants {
            let phase = format!("{:?}", t.phase);
            *f.by_phase.entry(phase.clone()).or_default() += 1;
            for c in &t.conditions {
                *f.by_condition.entry((c.kind.clone(), c.ok)).or_default() += 1;
            }
            f.phases.push((t.name.to_string(), phase));
            if let Some(at) = t
                .pki
                .as_ref()
                .map(|p| p.certificates_expire_at)
                .filter(|at| *at > 0)
            {
                f.certificates_expire_at.push((t.name.to_string(), at));
            }
            f.moving += i64::from(t.moving.is_some());
            f.walled += i64::from(t.walled().any());
        }
        f
    }
}

/// One datastore as a scrape shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatastoreFigures {
    pub candidate: Candidate,
    /// The last probe found it Ready.
    pub healthy: bool,
    /// etcd alarms raised on its members.
    pub alarms: i64,
}

/// Registers one unlabelled gauge holding `value`.
fn single(r: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    r.register(name, help, g);
}

/// The series read at scrape time, in a registry of their own (built per scrape, so a datastore
/// or tenant that is gone leaves no stale series).
pub(super) fn registry(
    leading: bool,
    datastores: &[DatastoreFigures],
    fleet: Option<&Fleet>,
    now_unix: i64,
) -> Registry {
    let mut r = Registry::with_prefix("kamaji");
    single(&mut r, "leader", "1 on the replica that holds the leader lease (runs tenants' lifecycles and datastore upkeep)", i64::from(leading));
    let per_ds =
        |name: &str, help: &str, f: &dyn Fn(&DatastoreFigures) -> i64, r: &mut Registry| {
            let fam = Family::<DatastoreLabel, Gauge>::default();
            for d in datastores {
                fam.get_or_create(&DatastoreLabel {
                    datastore: d.candidate.name.to_string(),
                })
                .set(f(d));
            }
            r.register(name, help, fam);
        };
    per_ds(
        "datastore_quota_bytes",
        "What the datastore may hold: its registered quota, or etcd's own when smaller",
        &|d| d.candidate.quota_bytes,
        &mut r,
    );
    per_ds(
        "datastore_reserved_bytes",
        "Sum of the reservations of the tenants placed on the datastore",
        &|d| d.candidate.reserved_bytes,
        &mut r,
    );
    per_ds(
        "datastore_used_bytes",
        "What the data takes in the datastore's etcd backend, free pages excluded (measured)",
        &|d| d.candidate.used_bytes,
        &mut r,
    );
    per_ds(
        "datastore_file_bytes",
        "The datastore's etcd backend file, free pages included (what etcd checks its quota against)",
        &|d| d.candidate.file_bytes,
        &mut r,
    );
    per_ds(
        "datastore_tenants",
        "Tenants placed on the datastore",
        &|d| i64::from(d.candidate.tenants),
        &mut r,
    );
    per_ds(
        "datastore_healthy",
        "1 when the datastore's last probe found it Ready",
        &|d| i64::from(d.healthy),
        &mut r,
    );
    per_ds(
        "datastore_alarms",
        "etcd alarms (NOSPACE, CORRUPT) raised on the datastore's members",
        &|d| d.alarms,
        &mut r,
    );
    per_ds(
        "datastore_draining",
        "1 while the datastore is being drained (its tenants moved off)",
        &|d| i64::from(d.candidate.draining),
        &mut r,
    );
    single(
        &mut r,
        "drains_in_progress",
        "Datastores being drained that still hold tenants",
        datastores
            .iter()
            .filter(|d| d.candidate.draining && d.candidate.tenants > 0)
            .count() as i64,
    );
    let Some(fleet) = fleet else {
        return r;
    };
    let by_phase = Family::<PhaseLabel, Gauge>::default();
    for (phase, n) in &fleet.by_phase {
        by_phase
            .get_or_create(&PhaseLabel {
                phase: phase.clone(),
            })
            .set(*n);
    }
    r.register("tenants", "Tenant clusters by phase", by_phase);
    let by_condition = Family::<ConditionLabels, Gauge>::default();
    for ((condition, ok), n) in &fleet.by_condition {
        by_condition
            .get_or_create(&ConditionLabels {
                condition: condition.clone(),
                status: if *ok { "true" } else { "false" },
            })
            .set(*n);
    }
    r.register(
        "tenants_by_condition",
        "Tenant clusters by condition and its status",
        by_condition,
    );
    let phases = Family::<TenantPhaseLabels, Gauge>::default();
    for (tenant, phase) in &fleet.phases {
        phases
            .get_or_create(&TenantPhaseLabels {
                tenant: tenant.clone(),
                phase: phase.clone(),
            })
            .set(1);
    }
    r.register(
        "tenant_phase",
        "1 for each tenant cluster, labelled with its phase",
        phases,
    );
    let expiry = Family::<TenantLabel, Gauge>::default();
    for (tenant, at) in &fleet.certificates_expire_at {
        expiry
            .get_or_create(&TenantLabel {
                tenant: tenant.clone(),
            })
            .set(at - now_unix);
    }
    r.register(
        "tenant_certificate_expiry_seconds",
        "Seconds until the first of the tenant's leaf certificates expires (kamajid renews them all before)",
        expiry,
    );
    single(
        &mut r,
        "moves_in_progress",
        "Tenants moving between datastores now",
        fleet.moving,
    );
    single(
        &mut r,
        "tenants_walled",
        "Tenants walled off (reads only) for being past their storage quota or write budget",
        fleet.walled,
    );
    r
}
