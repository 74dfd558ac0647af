//! How a tenant is named in a shared etcd: its key prefix, the prefix its apiserver is given, and
//! the key range that covers a prefix. Isolation rests on these: a role with read-write on exactly
//! `["/<id>/", prefix_end("/<id>/"))` and a user named by the tenant id. The trailing '/' is what
//! keeps tenant `team` out of `team-a`.

use crate::ids::TenantId;

/// The key prefix of tenant `id`, with the trailing '/' that isolation rests on.
pub fn prefix(id: &TenantId) -> String {
    format!("/{id}/")
}

/// The value of kube-apiserver's `--etcd-prefix` for tenant `id` (it appends '/' itself).
pub fn apiserver_etcd_prefix(id: &TenantId) -> String {
    format!("/{id}")
}

/// The end of the key range covering every key that starts with `prefix` (etcd's range_end).
/// With a trailing '/' in the prefix, `/a/` never covers `/ab/`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_covers_exactly_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert!(b"/ab/".as_slice() >= prefix_end(b"/a/").as_slice());
        assert!(b"/a/zzz".as_slice() < prefix_end(b"/a/").as_slice());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn prefixes_end_with_a_slash_so_names_that_share_a_start_stay_apart() {
        let team = TenantId::parse("team").unwrap();
        let team_a = TenantId::parse("team-a").unwrap();
        assert_eq!(prefix(&team), "/team/");
        assert!(!prefix(&team_a).starts_with(&prefix(&team)));
        assert_eq!(apiserver_etcd_prefix(&team), "/team");
    }
}
