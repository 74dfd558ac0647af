//! What kamajid knows about etcd releases: which ones let a tenant's certificate reach beyond
//! its prefix (refused), which let it act on the whole shard or are out of support (warned
//! about). Pure: a version string in, advisories out. Each entry was checked against etcd's own
//! code at the releases named (the lease checks of CVE-2023-32082; the compaction permission
//! check that `v3rpc` gained in 3.6.9) and, for the release the tests run, by
//! `daemon/tests/isolation.rs` against the real etcd.
//!
//! Isolation in a shared etcd rests on etcd's auth checks. A release with a known bypass of
//! those checks breaks it for every tenant of the shard, so registration refuses it (unless the
//! operator overrides, and then the datastore's status says why it is unsafe), and the health
//! probe marks a registered datastore that starts running one as insecure.

/// A known problem of an etcd release for a shared datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advisory {
    /// `CVE-2023-32082`, or a short name for problems without one.
    pub id: &'static str,
    /// What a tenant can do because of it.
    pub impact: &'static str,
    /// The releases that fix it.
    pub fixed_in: &'static str,
    /// Whether it breaks tenant isolation (refused), rather than only warning.
    pub breaks_isolation: bool,
}

/// An etcd release `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Release {
    /// Parses `3.6.16` (a leading `v` and a pre-release suffix such as `-rc.0` are tolerated).
    pub fn parse(v: &str) -> Option<Self> {
        let v = v.trim().trim_start_matches('v');
        let v = v.split(['-', '+']).next()?;
        let mut it = v.split('.');
        let r = Self {
            major: it.next()?.parse().ok()?,
            minor: it.next()?.parse().ok()?,
            patch: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(r)
    }

    const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

const LEASE_KEYS: Advisory = Advisory {
    id: "CVE-2023-32082",
    impact: "a tenant's certificate lists the key names of other tenants through leases \
             (lease timetolive --keys) and can keep their leases alive",
    fixed_in: "3.4.26 and 3.5.9",
    breaks_isolation: true,
};

const ANYONE_COMPACTS: Advisory = Advisory {
    id: "compaction-without-permission",
    impact: "any authenticated user may compact the whole datastore: a tenant's certificate can \
             drop every neighbour's watch history (their watches relist; no data is lost)",
    fixed_in: "3.6.9",
    breaks_isolation: false,
};

const OUT_OF_SUPPORT: Advisory = Advisory {
    id: "out-of-support",
    impact: "the release line gets no more security fixes",
    fixed_in: "3.5 and 3.6",
    breaks_isolation: false,
};

/// The advisories that apply to etcd `version` as etcd reports it. A version that does not
/// parse gets none: kamajid then knows nothing against it, and says so elsewhere.
pub fn advisories(version: &str) -> Vec<Advisory> {
    let Some(r) = Release::parse(version) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let lease_keys =
        r < Release::new(3, 4, 26) || (Release::new(3, 5, 0) <= r && r < Release::new(3, 5, 9));
    if lease_keys {
        out.push(LEASE_KEYS);
    }
    if r < Release::new(3, 6, 9) {
        out.push(ANYONE_COMPACTS);
    }
    if r < Release::new(3, 5, 0) {
        out.push(OUT_OF_SUPPORT);
    }
    out
}

/// One line naming each advisory of `version`, for an error or a status message.
pub fn describe(version: &str, advisories: &[Advisory]) -> String {
    advisories
        .iter()
        .map(|a| {
            format!(
                "etcd {version}: {} ({}); fixed in {}",
                a.impact, a.id, a.fixed_in
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &str) -> Vec<&'static str> {
        advisories(v).iter().map(|a| a.id).collect()
    }

    #[test]
    fn releases_with_the_lease_key_bypass_are_named_with_their_fix() {
        const ANY: &str = "compaction-without-permission";
        assert_eq!(ids("3.4.23"), ["CVE-2023-32082", ANY, "out-of-support"]);
        assert_eq!(ids("3.4.26"), [ANY, "out-of-support"]);
        assert_eq!(ids("3.5.0"), ["CVE-2023-32082", ANY]);
        assert_eq!(ids("3.5.8"), ["CVE-2023-32082", ANY]);
        assert_eq!(ids("3.5.9"), [ANY]);
        assert_eq!(ids("3.6.8"), [ANY]);
        assert!(ids("3.6.9").is_empty());
        assert!(ids("3.6.16").is_empty());
        assert!(ids("v3.7.0-rc.1").is_empty());
        assert!(ids("not a version").is_empty());
        let d = describe("3.4.23", &advisories("3.4.23"));
        assert!(
            d.contains("CVE-2023-32082") && d.contains("3.4.26 and 3.5.9"),
            "{d}"
        );
        assert!(advisories("3.4.23")[0].breaks_isolation);
        assert!(advisories("3.4.30").iter().all(|a| !a.breaks_isolation));
    }

    #[test]
    fn versions_parse_as_etcd_reports_them() {
        assert_eq!(Release::parse("3.6.16"), Some(Release::new(3, 6, 16)));
        assert_eq!(Release::parse("v3.5.9"), Some(Release::new(3, 5, 9)));
        assert_eq!(Release::parse("3.6"), None);
        assert_eq!(Release::parse("3.6.1.2"), None);
    }
}
