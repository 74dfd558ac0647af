//! Choosing the datastore a new tenant lives on. Pure: candidates in, a choice (or the reason
//! there is none) out, so every rule is tested by value.
//!
//! A datastore is a candidate when it is healthy (`Ready`), schedulable, matches the tenant's
//! selector, is below `max_tenants`, and has room for the tenant's reservation. Room is the
//! declared quota minus the larger of what is reserved (sum of tenants' reservations) and what
//! etcd measures (the data in use, free pages excluded: kamajid defragments them away):
//! reservations protect against a burst of new tenants that have not written anything yet,
//! measurement against tenants that outgrew their reservation. The file itself, free pages
//! included, is what etcd checks its quota against: a shard whose file is within
//! [`crate::shard::FULL_PERCENT`] of its quota takes no tenant until it is defragmented.
//!
//! Policies: `Spread` (default) picks the candidate with the largest free fraction, spreading
//! load and failure domains; `Binpack` the one with the least room that still fits, keeping
//! whole datastores free for draining or large tenants. Ties go to fewer tenants, then name, so
//! the choice is deterministic.

use std::collections::BTreeMap;

use crate::ids::DatastoreName;
use crate::spec::Placement;

/// What placement needs to know about one datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: DatastoreName,
    pub ready: bool,
    pub schedulable: bool,
    /// Being drained: its tenants move off, and it takes no new one.
    pub draining: bool,
    pub labels: BTreeMap<String, String>,
    pub quota_bytes: i64,
    pub max_tenants: Option<u32>,
    pub tenants: u32,
    /// Sum of the reservations of the tenants placed here.
    pub reserved_bytes: i64,
    /// What the data takes in etcd's backend (free pages excluded).
    pub used_bytes: i64,
    /// etcd's backend file, free pages included (what its quota is checked against).
    pub file_bytes: i64,
}

impl Candidate {
    /// Bytes still available for new reservations.
    pub fn free_bytes(&self) -> i64 {
        self.quota_bytes - self.reserved_bytes.max(self.used_bytes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    Spread,
    Binpack,
}

/// A tenant asking for a home.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub reservation_bytes: i64,
    /// A datastore named by the user; placement then only checks it.
    pub datastore: Option<DatastoreName>,
    /// Labels a datastore must carry (ignored when `datastore` is set).
    pub selector: BTreeMap<String, String>,
}

impl Request {
    /// What a tenant with `placement` asks for, reserving `reservation_bytes`.
    pub fn new(placement: &Placement, reservation_bytes: i64) -> Self {
        let (datastore, selector) = match placement {
            Placement::Any => (None, BTreeMap::new()),
            Placement::Named(n) => (Some(n.clone()), BTreeMap::new()),
            Placement::Selector(s) => (None, s.clone()),
        };
        Self {
            reservation_bytes,
            datastore,
            selector,
        }
    }
}

/// Why one datastore cannot take the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotReady,
    Cordoned,
    SelectorMismatch,
    TenantLimit { max: u32 },
    Full { free_bytes: i64, needed_bytes: i64 },
    FileFull { file_bytes: i64, quota_bytes: i64 },
}

impl Refusal {
    /// A short, fixed name for the reason (a metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotReady => "not_ready",
            Self::Cordoned => "cordoned",
            Self::SelectorMismatch => "selector_mismatch",
            Self::TenantLimit { .. } => "tenant_limit",
            Self::Full { .. } => "full",
            Self::FileFull { .. } => "file_full",
        }
    }
}

/// Every reason [`PlacementError::reasons`] gives.
pub const REASONS: [&str; 8] = [
    "unknown_datastore",
    "no_datastore",
    "not_ready",
    "cordoned",
    "selector_mismatch",
    "tenant_limit",
    "full",
    "file_full",
];

impl PlacementError {
    /// The reasons, by [`Refusal::kind`], each once: what kept the tenant off each datastore
    /// (`unknown_datastore` when it named one that does not exist, `no_datastore` when there
    /// is none at all).
    pub fn reasons(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = match self {
            Self::UnknownDatastore(_) => vec!["unknown_datastore"],
            Self::Refused { reason, .. } => vec![reason.kind()],
            Self::NoCandidate(r) if r.is_empty() => vec!["no_datastore"],
            Self::NoCandidate(r) => r.iter().map(|(_, why)| why.kind()).collect(),
        };
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotReady => f.write_str("not Ready"),
            Self::Cordoned => f.write_str("not schedulable (cordoned or drained)"),
            Self::SelectorMismatch => f.write_str("labels do not match datastore_selector"),
            Self::TenantLimit { max } => write!(f, "holds its max_tenants ({max})"),
            Self::FileFull {
                file_bytes,
                quota_bytes,
            } => write!(
                f,
                "has a database file of {file_bytes} bytes, too near its quota of {quota_bytes} \
                 until it is defragmented"
            ),
            Self::Full {
                free_bytes,
                needed_bytes,
            } => {
                write!(
                    f,
                    "has {free_bytes} bytes free, the tenant reserves {needed_bytes}"
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("datastore {:?} does not exist", .0.as_str())]
    UnknownDatastore(DatastoreName),
    #[error("datastore {:?} cannot take the tenant: it {reason}", name.as_str())]
    Refused {
        name: DatastoreName,
        reason: Refusal,
    },
    #[error("no datastore can take the tenant{}", describe(.0))]
    NoCandidate(Vec<(DatastoreName, Refusal)>),
}

fn describe(refusals: &[(DatastoreName, Refusal)]) -> String {
    if refusals.is_empty() {
        return ": no datastore is registered".into();
    }
    let parts: Vec<String> = refusals.iter().map(|(n, r)| format!("{n} {r}")).collect();
    format!(": {}", parts.join("; "))
}

fn refusal(c: &Candidate, req: &Request, check_selector: bool) -> Option<Refusal> {
    if !c.ready {
        return Some(Refusal::NotReady);
    }
    if !c.schedulable || c.draining {
        return Some(Refusal::Cordoned);
    }
    if check_selector && !req.selector.iter().all(|(k, v)| c.labels.get(k) == Some(v)) {
        return Some(Refusal::SelectorMismatch);
    }
    if let Some(max) = c.max_tenants {
        if c.tenants >= max {
            return Some(Refusal::TenantLimit { max });
        }
    }
    if i128::from(c.file_bytes) * 100
        >= i128::from(c.quota_bytes) * i128::from(crate::shard::FULL_PERCENT)
    {
        return Some(Refusal::FileFull {
            file_bytes: c.file_bytes,
            quota_bytes: c.quota_bytes,
        });
    }
    if c.free_bytes() < req.reservation_bytes {
        return Some(Refusal::Full {
            free_bytes: c.free_bytes().max(0),
            needed_bytes: req.reservation_bytes,
        });
    }
    None
}

/// Picks the datastore for `req` among `candidates`.
pub fn place<'a>(
    req: &Request,
    candidates: &'a [Candidate],
    policy: Policy,
) -> Result<&'a Candidate, PlacementError> {
    if let Some(name) = &req.datastore {
        let c = candidates
            .iter()
            .find(|c| &c.name == name)
            .ok_or_else(|| PlacementError::UnknownDatastore(name.clone()))?;
        return match refusal(c, req, false) {
            None => Ok(c),
            Some(reason) => Err(PlacementError::Refused {
                name: name.clone(),
                reason,
            }),
        };
    }
    let mut refused = Vec::new();
    let mut fit: Vec<&Candidate> = Vec::new();
    for c in candidates {
        match refusal(c, req, true) {
            None => fit.push(c),
            Some(r) => refused.push((c.name.clone(), r)),
        }
    }
    // Free fraction compared exactly, as a cross-multiplication of i128s.
    let frac_cmp = |a: &Candidate, b: &Candidate| {
        (i128::from(a.free_bytes()) * i128::from(b.quota_bytes))
            .cmp(&(i128::from(b.free_bytes()) * i128::from(a.quota_bytes)))
    };
    let tie = |a: &&Candidate, b: &&Candidate| {
        a.tenants.cmp(&b.tenants).then_with(|| a.name.cmp(&b.name))
    };
    let best = match policy {
        Policy::Spread => fit
            .into_iter()
            .min_by(|a, b| frac_cmp(b, a).then_with(|| tie(a, b))),
        Policy::Binpack => fit
            .into_iter()
            .min_by(|a, b| a.free_bytes().cmp(&b.free_bytes()).then_with(|| tie(a, b))),
    };
    best.ok_or(PlacementError::NoCandidate(refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: i64 = 1 << 30;
    const MIB: i64 = 1 << 20;

    #[test]
    fn every_reason_given_is_listed() {
        let name = DatastoreName::parse("a").unwrap();
        let all = [
            Refusal::NotReady,
            Refusal::Cordoned,
            Refusal::SelectorMismatch,
            Refusal::TenantLimit { max: 1 },
            Refusal::Full {
                free_bytes: 0,
                needed_bytes: 1,
            },
            Refusal::FileFull {
                file_bytes: 1,
                quota_bytes: 1,
            },
        ];
        let mut given: Vec<&str> = all.iter().map(Refusal::kind).collect();
        given.extend(PlacementError::UnknownDatastore(name.clone()).reasons());
        given.extend(PlacementError::NoCandidate(Vec::new()).reasons());
        given.sort_unstable();
        let mut listed = REASONS.to_vec();
        listed.sort_unstable();
        assert_eq!(given, listed);
    }

    fn ds(name: &str, quota: i64) -> Candidate {
        Candidate {
            name: DatastoreName::parse(name).unwrap(),
            ready: true,
            schedulable: true,
            draining: false,
            labels: BTreeMap::new(),
            quota_bytes: quota,
            max_tenants: None,
            tenants: 0,
            reserved_bytes: 0,
            used_bytes: 0,
            file_bytes: 0,
        }
    }

    fn req(mib: i64) -> Request {
        Request {
            reservation_bytes: mib * MIB,
            ..Default::default()
        }
    }

    /// Places `n` tenants one after another, recording each reservation as the store would.
    fn fill(pool: &mut [Candidate], n: usize, r: &Request, policy: Policy) -> usize {
        let mut placed = 0;
        for _ in 0..n {
            let Ok(c) = place(r, pool, policy) else { break };
            let name = c.name.clone();
            let c = pool.iter_mut().find(|c| c.name == name).unwrap();
            c.tenants += 1;
            c.reserved_bytes += r.reservation_bytes;
            placed += 1;
        }
        placed
    }

    #[test]
    fn spread_fills_shards_in_proportion_to_their_quota() {
        let mut pool = vec![
            ds("a", 2 * GIB),
            ds("b", 4 * GIB),
            ds("c", 8 * GIB),
            ds("d", 8 * GIB),
        ];
        assert_eq!(fill(&mut pool, 1000, &req(16), Policy::Spread), 1000);
        for c in &pool {
            let util = c.reserved_bytes as f64 / c.quota_bytes as f64;
            // 1000 × 16 MiB over 22 GiB is 71 %; every shard within one tenant of that.
            assert!(
                (util - 16000.0 / (22.0 * 1024.0)).abs()
                    < 16.0 * MIB as f64 / c.quota_bytes as f64 + 1e-9,
                "{}: {util}",
                c.name
            );
        }
    }

    #[test]
    fn room_counts_the_data_in_use_and_a_file_near_the_quota_takes_no_tenant() {
        // 6 GiB of free pages in a 7 GiB file: room for a tenant, until the file nears the quota.
        let mut fragmented = ds("fragmented", 8 * GIB);
        fragmented.used_bytes = GIB;
        fragmented.file_bytes = 7 * GIB;
        assert_eq!(
            place(&req(64), std::slice::from_ref(&fragmented), Policy::Spread)
                .unwrap()
                .name
                .as_str(),
            "fragmented"
        );
        fragmented.file_bytes = 8 * GIB - 100 * MIB;
        let text = place(&req(64), &[fragmented], Policy::Spread)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("too near its quota") && text.contains("defragmented"),
            "{text}"
        );
    }

    #[test]
    fn binpack_fills_the_tightest_shard_first() {
        let mut pool = vec![ds("big", 8 * GIB), ds("small", 2 * GIB)];
        assert_eq!(fill(&mut pool, 10, &req(100), Policy::Binpack), 10);
        assert_eq!((pool[0].tenants, pool[1].tenants), (0, 10));
    }

    #[test]
    fn unhealthy_cordoned_full_and_capped_shards_are_skipped_with_reasons() {
        let mut down = ds("down", 8 * GIB);
        down.ready = false;
        let mut cordoned = ds("cordoned", 8 * GIB);
        cordoned.schedulable = false;
        let mut full = ds("full", GIB);
        full.used_bytes = GIB - MIB;
        let mut capped = ds("capped", 8 * GIB);
        capped.max_tenants = Some(3);
        capped.tenants = 3;
        let pool = vec![down, cordoned, full, capped];
        let err = place(&req(64), &pool, Policy::Spread).unwrap_err();
        let text = err.to_string();
        for needle in [
            "down not Ready",
            "cordoned not schedulable",
            "full has 1048576 bytes free",
            "capped holds its max_tenants (3)",
        ] {
            assert!(text.contains(needle), "{text}");
        }
        let mut ok = pool.clone();
        ok.push(ds("ok", GIB));
        assert_eq!(
            place(&req(64), &ok, Policy::Spread).unwrap().name.as_str(),
            "ok"
        );
    }

    #[test]
    fn measured_usage_beyond_reservations_counts() {
        let mut a = ds("a", 4 * GIB);
        a.reserved_bytes = GIB;
        a.used_bytes = 3 * GIB; // tenants outgrew their reservations
        let b = ds("b", 2 * GIB);
        assert_eq!(
            place(&req(64), &[a.clone(), b], Policy::Spread)
                .unwrap()
                .name,
            "b"
        );
        assert_eq!(a.free_bytes(), GIB);
    }

    #[test]
    fn a_selector_limits_candidates() {
        let mut eu = ds("eu", 2 * GIB);
        eu.labels.insert("region".into(), "eu".into());
        let us = ds("us", 8 * GIB);
        let r = Request {
            reservation_bytes: MIB,
            selector: [("region".into(), "eu".into())].into(),
            ..Default::default()
        };
        assert_eq!(
            place(&r, &[eu.clone(), us.clone()], Policy::Spread)
                .unwrap()
                .name,
            "eu"
        );
        let r = Request {
            reservation_bytes: MIB,
            selector: [("region".into(), "ap".into())].into(),
            ..Default::default()
        };
        assert!(
            matches!(place(&r, &[eu, us], Policy::Spread), Err(PlacementError::NoCandidate(v)) if v.iter().all(|(_, r)| *r == Refusal::SelectorMismatch))
        );
    }

    #[test]
    fn a_named_datastore_is_checked_not_chosen() {
        let mut full = ds("full", GIB);
        full.reserved_bytes = GIB;
        let pool = vec![full, ds("roomy", 8 * GIB)];
        let r = Request {
            reservation_bytes: MIB,
            datastore: Some(DatastoreName::parse("full").unwrap()),
            ..Default::default()
        };
        assert!(
            matches!(place(&r, &pool, Policy::Spread), Err(PlacementError::Refused { ref name, reason: Refusal::Full { .. } }) if name.as_str() == "full")
        );
        let r = Request {
            reservation_bytes: MIB,
            datastore: Some(DatastoreName::parse("roomy").unwrap()),
            ..Default::default()
        };
        assert_eq!(
            place(&r, &pool, Policy::Spread).unwrap().name.as_str(),
            "roomy"
        );
        let r = Request {
            reservation_bytes: MIB,
            datastore: Some(DatastoreName::parse("nope").unwrap()),
            ..Default::default()
        };
        assert_eq!(
            place(&r, &pool, Policy::Spread).unwrap_err(),
            PlacementError::UnknownDatastore(DatastoreName::parse("nope").unwrap())
        );
    }

    #[test]
    fn ties_break_by_tenant_count_then_name() {
        let mut a = ds("a", GIB);
        a.tenants = 2;
        let b = ds("b", GIB);
        let c = ds("c", GIB);
        assert_eq!(
            place(&req(0), &[a, c, b], Policy::Spread).unwrap().name,
            "b"
        );
        assert!(
            matches!(place(&req(1), &[], Policy::Spread), Err(PlacementError::NoCandidate(v)) if v.is_empty())
        );
    }
}
