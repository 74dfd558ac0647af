//! Kubernetes releases: the one parser, which minors kamajid runs, and how a tenant's version
//! may move.

use crate::error::{Check, FieldError};

/// Kubernetes minors kamajid runs control planes for.
pub const SUPPORTED_MINORS: std::ops::RangeInclusive<u32> = 33..=37;

/// A Kubernetes release `1.<minor>.<patch>`, written without a leading `v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub minor: u32,
    pub patch: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "1.{}.{}", self.minor, self.patch)
    }
}

impl Version {
    /// Parses `1.35.2` or `v1.35.2`: a release as Kubernetes numbers them (semver without
    /// pre-release or build, major 1). Says nothing of support: a stored tenant on a minor
    /// kamajid no longer offers must still load ([`version`] judges what users write).
    pub fn parse(v: &str) -> Option<Self> {
        let s = semver::Version::parse(v.strip_prefix('v').unwrap_or(v)).ok()?;
        let fits = s.major == 1 && s.pre.is_empty() && s.build.is_empty();
        Some(Self {
            minor: u32::try_from(s.minor).ok()?,
            patch: u32::try_from(s.patch).ok()?,
        })
        .filter(|_| fits)
    }

    /// `v1.35.2`, as image tags and `--version` output write it.
    pub fn tag(&self) -> String {
        format!("v{self}")
    }
}

fn supported() -> String {
    format!(
        "1.{}.x to 1.{}.x",
        SUPPORTED_MINORS.start(),
        SUPPORTED_MINORS.end()
    )
}

/// A version as a user writes it (a leading `v` is accepted), of a supported minor.
pub fn version(field: &str, v: &str) -> Result<Version, FieldError> {
    let parsed = Version::parse(v).ok_or_else(|| {
        FieldError::new(
            field,
            format!(
                "{v:?} is not a Kubernetes version such as \"1.35.4\"; supported: {}",
                supported()
            ),
        )
    })?;
    if !SUPPORTED_MINORS.contains(&parsed.minor) {
        return Err(FieldError::new(
            field,
            format!(
                "Kubernetes 1.{} is not supported; supported: {}",
                parsed.minor,
                supported()
            ),
        ));
    }
    Ok(parsed)
}

/// An in-place version change: never down, minors up one at a time, as Kubernetes' version
/// skew policy requires.
pub fn upgrade(field: &str, from: Version, to: Version) -> Check {
    if to < from {
        return Err(FieldError::new(
            field,
            format!(
                "cannot downgrade from {from} to {to}; Kubernetes control planes only move forward"
            ),
        ));
    }
    if to.minor > from.minor + 1 {
        return Err(FieldError::new(
            field,
            format!(
                "cannot upgrade from {from} to {to} in one step; upgrade one minor at a time \
                 (next: 1.{}.x)",
                from.minor + 1
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_and_write_as_kubernetes_does() {
        let v = Version::parse("v1.37.2").unwrap();
        assert_eq!((v.minor, v.patch), (37, 2));
        assert_eq!(v.to_string(), "1.37.2");
        assert_eq!(v.tag(), "v1.37.2");
        assert_eq!(Version::parse("1.37.2"), Some(v));
        for bad in [
            "2.1.0",
            "1.37",
            "1.37.2.1",
            "latest",
            "1.037.2",
            "1.37.2-rc.1",
            "1.37.2+k3s1",
            "",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert!(Version::parse("1.36.9").unwrap() < v);
        // Parsed, though no longer offered: a stored tenant on it still loads.
        assert_eq!(Version::parse("1.20.1").map(|v| v.minor), Some(20));
        assert!(version("kubernetes_version", "1.20.1")
            .unwrap_err()
            .message
            .contains("not supported"));
    }
}
