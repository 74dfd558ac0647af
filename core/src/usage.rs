//! What each tenant keeps in a shared etcd, counted from the keys themselves: bytes of keys and
//! values, and the number of keys, under each tenant's prefix (`/<id>/`).
//!
//! A [`Tally`] is seeded from one scan of a shard at a revision, then kept current by the
//! shard's events after that revision, each with the value it replaced (etcd's `prev_kv`): a put
//! adds the new size and takes away the old, a delete takes away the old. So a shard is read
//! whole once, not on every cycle. Pure: the daemon feeds it what etcd says.
//!
//! The figure is the live data, not etcd's backend size: the history etcd keeps until
//! compaction and the free pages of its file belong to no tenant.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What one tenant (or a whole shard) keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageUsage {
    /// Bytes of keys and values.
    pub bytes: i64,
    pub keys: i64,
}

impl std::ops::AddAssign for StorageUsage {
    fn add_assign(&mut self, o: Self) {
        self.bytes += o.bytes;
        self.keys += o.keys;
    }
}

/// The tenant id a key of a shared etcd belongs to: its first path segment, when the key is
/// `/<id>/...`. Keys of no tenant (none should exist) are not counted.
pub fn tenant_of(key: &[u8]) -> Option<&str> {
    let rest = key.strip_prefix(b"/")?;
    let end = rest.iter().position(|b| *b == b'/')?;
    std::str::from_utf8(&rest[..end])
        .ok()
        .filter(|id| !id.is_empty())
}

/// One change to a key, as a watch with previous values reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// `value_len` bytes written; `prev_len` is the value replaced (`None`: a new key).
    Put {
        key: &'a [u8],
        value_len: usize,
        prev_len: Option<usize>,
    },
    /// The key removed; `prev_len` is the value it held.
    Delete { key: &'a [u8], prev_len: usize },
}

/// Per-tenant usage of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    tenants: HashMap<String, StorageUsage>,
}

fn size(key: &[u8], value_len: usize) -> i64 {
    i64::try_from(key.len() + value_len).unwrap_or(i64::MAX)
}

impl Tally {
    /// Counts a key that exists (a scan).
    pub fn seed(&mut self, key: &[u8], value_len: usize) {
        if let Some(id) = tenant_of(key) {
            *self.tenants.entry(id.to_owned()).or_default() += StorageUsage {
                bytes: size(key, value_len),
                keys: 1,
            };
        }
    }

    /// Applies one change after the scan.
    pub fn apply(&mut self, change: Change<'_>) {
        let (key, delta) = match change {
            Change::Put {
                key,
                value_len,
                prev_len: Some(prev),
            } => (
                key,
                StorageUsage {
                    bytes: size(key, value_len) - size(key, prev),
                    keys: 0,
                },
            ),
            Change::Put {
                key,
                value_len,
                prev_len: None,
            } => (
                key,
                StorageUsage {
                    bytes: size(key, value_len),
                    keys: 1,
                },
            ),
            Change::Delete { key, prev_len } => (
                key,
                StorageUsage {
                    bytes: -size(key, prev_len),
                    keys: -1,
                },
            ),
        };
        let Some(id) = tenant_of(key) else { return };
        let u = self.tenants.entry(id.to_owned()).or_default();
        *u += delta;
        if u.keys <= 0 {
            self.tenants.remove(id);
        }
    }

    /// What tenant `id` keeps (nothing when it has no key).
    pub fn tenant(&self, id: &str) -> StorageUsage {
        self.tenants.get(id).copied().unwrap_or_default()
    }

    /// What every tenant of the shard keeps together.
    pub fn total(&self) -> StorageUsage {
        let mut t = StorageUsage::default();
        for u in self.tenants.values() {
            t += *u;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_belong_to_the_tenant_of_their_first_segment_and_team_is_not_team_a() {
        assert_eq!(tenant_of(b"/team/pods/default/a"), Some("team"));
        assert_eq!(tenant_of(b"/team-a/pods/default/a"), Some("team-a"));
        assert_eq!(tenant_of(b"/team"), None);
        assert_eq!(tenant_of(b"//x"), None);
        assert_eq!(tenant_of(b"kamajid/x"), None);
    }

    #[test]
    fn a_tally_kept_by_changes_equals_a_fresh_scan() {
        let mut kept = Tally::default();
        kept.seed(b"/a/configmaps/x", 10);
        kept.seed(b"/b/configmaps/y", 100);
        kept.apply(Change::Put {
            key: b"/a/configmaps/x",
            value_len: 30,
            prev_len: Some(10),
        });
        kept.apply(Change::Put {
            key: b"/a/secrets/s",
            value_len: 5,
            prev_len: None,
        });
        kept.apply(Change::Delete {
            key: b"/b/configmaps/y",
            prev_len: 100,
        });
        kept.apply(Change::Put {
            key: b"/stray",
            value_len: 7,
            prev_len: None,
        });

        let mut scan = Tally::default();
        scan.seed(b"/a/configmaps/x", 30);
        scan.seed(b"/a/secrets/s", 5);
        assert_eq!(kept, scan);
        assert_eq!(
            kept.tenant("a"),
            StorageUsage {
                bytes: (15 + 30) + (12 + 5),
                keys: 2
            }
        );
        assert_eq!(kept.tenant("b"), StorageUsage::default());
        assert_eq!(kept.total(), kept.tenant("a"));
    }
}
