//! Moving a tenant's keys between two datastores, as their administrator: holding its writes,
//! raising the target's revision, copying its prefix and checking the copy. The lifecycle's
//! move steps call these through [`super::isolation::EtcdIsolation`].

use etcd_client::{
    Client, DeleteOptions, GetOptions, KvClient, Permission, PermissionType, Txn, TxnOp,
};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use kamaji_core::etcd_keys::{prefix, prefix_end};
use kamaji_core::ids::TenantId;
use kamaji_core::lifecycle::ports::Copied;

use crate::etcd::error_chain;

/// Keys per page read: each value is at most what the apiserver accepts (about 1.5 MiB).
pub const PAGE: i64 = 100;
/// Largest message read: a page of the largest values.
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;
/// Writes per transaction, within etcd's default `--max-txn-ops` (128) and request size.
const TXN_OPS: usize = 100;
const TXN_BYTES: usize = 1024 * 1024;
/// The key the target's revision is raised with; outside every tenant prefix (no leading '/').
const FLOOR: &str = "kamajid-revision-floor";
/// Writes in flight while raising a revision.
const IN_FLIGHT: usize = 64;

fn err(e: etcd_client::Error) -> String {
    error_chain(&e)
}

/// A KV client that reads pages of large values.
pub fn kv(c: &Client) -> KvClient {
    c.kv_client().max_decoding_message_size(MAX_MESSAGE)
}

/// What tenant `id`'s etcd role lets it do on a datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Its whole prefix.
    ReadWrite,
    /// Read its prefix, write only the two keys of kamajid's storage policy inside it (so kamajid
    /// can put that policy in place through the tenant's apiserver): the hard wall.
    Walled,
    /// Read only: a move holds its writes, or it kept rewriting even the policy's keys.
    ReadOnly,
}

/// The keys of kamajid's storage policy and its binding under tenant `id`'s prefix, as the
/// apiserver stores them (`<prefix>/<resource>/<name>`).
pub fn policy_keys(id: &TenantId) -> [String; 2] {
    let p = prefix(id);
    let name = kamaji_core::bootstrap::quota::POLICY;
    [
        format!("{p}validatingadmissionpolicies/{name}"),
        format!("{p}validatingadmissionpolicybindings/{name}"),
    ]
}

/// Gives tenant `id`'s role on this datastore `access`, changing only what differs, in the
/// order that never lets through more than either the old or the new access allows. The policy
/// keys stay granted but while read-only (inside the prefix they add nothing), so raising the
/// hard wall is one permission change, the prefix made read-only: the fewer round trips
/// between the event that passed a limit and the wall, the fewer writes in flight get through.
/// They are revoked only after the prefix turned read-only, and granted again after it is
/// read-write. etcd replaces a permission on the same range; a revoke of one not granted is
/// benign.
pub async fn set_access(c: &mut Client, id: &TenantId, access: Access) -> Result<(), String> {
    let p = prefix(id);
    let end = prefix_end(p.as_bytes());
    let keys = policy_keys(id);
    let role = c.role_get(id.as_str()).await.map_err(err)?;
    let perms = role.permissions();
    let has = |key: &[u8], range_end: &[u8], ty: PermissionType| {
        perms
            .iter()
            .any(|q| q.key() == key && q.range_end() == range_end && q.get_type() == ty as i32)
    };
    let prefix_rw = has(p.as_bytes(), &end, PermissionType::Readwrite);
    let prefix_ro = has(p.as_bytes(), &end, PermissionType::Read);
    let keys_rw = keys
        .iter()
        .all(|k| has(k.as_bytes(), b"", PermissionType::Readwrite));
    let keys_none = keys.iter().all(|k| {
        !perms
            .iter()
            .any(|q| q.key() == k.as_bytes() && q.range_end().is_empty())
    });

    let grant_prefix = |c: &mut Client, rw: bool| {
        let perm = if rw {
            Permission::read_write(p.as_bytes())
        } else {
            Permission::read(p.as_bytes())
        }
        .with_range_end(end.clone());
        let mut c = c.clone();
        async move {
            c.role_grant_permission(id.as_str(), perm)
                .await
                .map(|_| ())
                .map_err(err)
        }
    };
    let grant_keys = |c: &mut Client| {
        let mut c = c.clone();
        let keys = keys.clone();
        async move {
            for k in keys {
                c.role_grant_permission(id.as_str(), Permission::read_write(k.as_bytes()))
                    .await
                    .map_err(err)?;
            }
            Ok::<(), String>(())
        }
    };
    let revoke_keys = |c: &mut Client| {
        let mut c = c.clone();
        let keys = keys.clone();
        async move {
            for k in keys {
                match c
                    .role_revoke_permission(id.as_str(), k.as_bytes(), None)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if error_chain(&e).contains("permission is not granted") => {}
                    Err(e) => return Err(err(e)),
                }
            }
            Ok::<(), String>(())
        }
    };
    match access {
        Access::ReadWrite => {
            if !prefix_rw {
                grant_prefix(c, true).await?;
            }
            if !keys_rw {
                grant_keys(c).await?;
            }
        }
        Access::Walled => {
            if !keys_rw {
                grant_keys(c).await?;
            }
            if !prefix_ro {
                grant_prefix(c, false).await?;
            }
        }
        Access::ReadOnly => {
            if !prefix_ro {
                grant_prefix(c, false).await?;
            }
            if !keys_none {
                revoke_keys(c).await?;
            }
        }
    }
    Ok(())
}

/// Raises the hard wall of tenant `id`, whose role kamajid set read-write in this process (so
/// the policy keys are granted): one permission change, no read first. Writes the tenant's
/// apiserver has sent but etcd has not applied yet are refused too (etcd checks permissions at
/// apply against the auth revision), so what passes a limit is only what etcd applies before
/// this lands.
pub async fn wall_up(c: &mut Client, id: &TenantId) -> Result<(), String> {
    let p = prefix(id);
    let perm = Permission::read(p.as_bytes()).with_range_end(prefix_end(p.as_bytes()));
    c.role_grant_permission(id.as_str(), perm)
        .await
        .map(|_| ())
        .map_err(err)
}

async fn revision(c: &mut KvClient) -> Result<i64, String> {
    let r = c
        .get(FLOOR, Some(GetOptions::new().with_count_only()))
        .await
        .map_err(err)?;
    Ok(r.header().map_or(0, |h| h.revision()))
}

/// Raises `dst`'s revision towards `src`'s current one with at most `budget` empty writes to
/// one key outside every tenant, many in flight; once past, removes that key (a delete of a
/// key that is gone writes nothing). How many writes it took and how many revisions are
/// still to raise (0: past).
pub async fn align(src: &Client, dst: &Client, budget: u64) -> Result<(u64, u64), String> {
    let (mut s, mut d) = (kv(src), kv(dst));
    let want = revision(&mut s).await?;
    let mut writes = 0u64;
    loop {
        let have = revision(&mut d).await?;
        let left = u64::try_from(want - have + 1).unwrap_or(0);
        if left == 0 {
            d.delete(FLOOR, None).await.map_err(err)?;
            return Ok((writes, 0));
        }
        if writes >= budget {
            return Ok((writes, left));
        }
        let n = left.min(20_000).min(budget - writes);
        futures::stream::iter(0..n)
            .map(|_| {
                let mut d = d.clone();
                async move { d.put(FLOOR, "", None).await.map(|_| ()).map_err(err) }
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<()>()
            .await?;
        writes += n;
    }
}

/// Count, bytes and digest of every key of `id`'s prefix, read a page at a time at `rev`
/// (0: now); each page is also written to `into`, when given, before the next is read. The
/// digest covers each key, its value and whether it is bound to a lease (the lease ids differ
/// between datastores; what matters is that a key that expires still expires).
async fn walk(
    c: &mut KvClient,
    id: &TenantId,
    rev: i64,
    mut into: Option<(&mut KvClient, &mut Leases)>,
) -> Result<(Copied, String), String> {
    let p = prefix(id);
    let end = prefix_end(p.as_bytes());
    let mut from = p.into_bytes();
    let mut sum = Sha256::new();
    let mut out = Copied::default();
    loop {
        let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if rev > 0 {
            opts = opts.with_revision(rev);
        }
        let page = c.get(from.clone(), Some(opts)).await.map_err(err)?;
        for kv in page.kvs() {
            for part in [kv.key(), kv.value()] {
                sum.update((part.len() as u64).to_be_bytes());
                sum.update(part);
            }
            sum.update([u8::from(kv.lease() != 0)]);
            out.keys += 1;
            out.bytes += (kv.key().len() + kv.value().len()) as i64;
        }
        if let Some((d, leases)) = into.as_mut() {
            write(d, leases, page.kvs()).await?;
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok((out, hex::encode(sum.finalize()))),
        }
    }
}

/// The leases of a copy: each source lease is granted again on the target, once, with the time
/// it had left (Events, the apiserver's leases for its own identity, expire on the target as they
/// would have on the source).
pub struct Leases {
    src: etcd_client::LeaseClient,
    dst: etcd_client::LeaseClient,
    /// Source lease → target lease (`None`: it expired before it could be copied).
    granted: std::collections::HashMap<i64, Option<i64>>,
}

impl Leases {
    pub fn new(src: &Client, dst: &Client) -> Self {
        Self {
            src: src.lease_client(),
            dst: dst.lease_client(),
            granted: Default::default(),
        }
    }

    /// The target lease standing for source lease `id`.
    async fn on_target(&mut self, id: i64) -> Result<Option<i64>, String> {
        if let Some(g) = self.granted.get(&id) {
            return Ok(*g);
        }
        let ttl = self.src.time_to_live(id, None).await.map_err(err)?.ttl();
        let granted = if ttl <= 0 {
            None
        } else {
            Some(self.dst.grant(ttl, None).await.map_err(err)?.id())
        };
        self.granted.insert(id, granted);
        Ok(granted)
    }

    /// How many leases were granted on the target.
    pub fn count(&self) -> usize {
        self.granted.values().filter(|g| g.is_some()).count()
    }
}

/// Puts `kvs` in transactions of bounded size, each key bound to the target's lease for its
/// source lease. A key whose lease expired meanwhile is not copied: it was about to go.
async fn write(
    d: &mut KvClient,
    leases: &mut Leases,
    kvs: &[etcd_client::KeyValue],
) -> Result<(), String> {
    let mut ops = Vec::new();
    let mut size = 0;
    for kv in kvs {
        let lease = match kv.lease() {
            0 => None,
            l => match leases.on_target(l).await? {
                Some(t) => Some(t),
                None => continue,
            },
        };
        if !ops.is_empty() && (ops.len() == TXN_OPS || size + kv.value().len() > TXN_BYTES) {
            d.txn(Txn::new().and_then(std::mem::take(&mut ops)))
                .await
                .map_err(err)?;
            size = 0;
        }
        size += kv.key().len() + kv.value().len();
        let opts = lease.map(|l| etcd_client::PutOptions::new().with_lease(l));
        ops.push(TxnOp::put(kv.key(), kv.value(), opts));
    }
    if !ops.is_empty() {
        d.txn(Txn::new().and_then(ops)).await.map_err(err)?;
    }
    Ok(())
}

/// Copies `id`'s prefix from `src` (its writes held) to `dst`, replacing what an earlier
/// attempt left, each key bound to a lease with the time its lease had left on the source,
/// then reads both back and compares count and digest. (A key whose lease expires during the
/// copy makes the digests differ; the move's copy step is then tried again.)
pub async fn copy(src: &Client, dst: &Client, id: &TenantId) -> Result<Copied, String> {
    let (mut s, mut d) = (kv(src), kv(dst));
    let p = prefix(id);
    let end = prefix_end(p.as_bytes());
    // One revision for every page: the prefix no longer changes, but other tenants' keys do.
    let rev = s
        .get(
            p.as_str(),
            Some(GetOptions::new().with_range(end.clone()).with_count_only()),
        )
        .await
        .map_err(err)?
        .header()
        .map_or(0, |h| h.revision());
    d.delete(p.as_str(), Some(DeleteOptions::new().with_range(end)))
        .await
        .map_err(err)?;
    let mut leases = Leases::new(src, dst);
    let (copied, want) = walk(&mut s, id, rev, Some((&mut d, &mut leases))).await?;
    let (there, got) = walk(&mut d, id, 0, None).await?;
    tracing::debug!(tenant = %id, keys = copied.keys, leases = leases.count(), "prefix copied");
    if (there, &got) != (copied, &want) {
        return Err(format!(
            "the copy does not match: the source holds {} keys ({} bytes, digest {want}), the \
             target {} keys ({} bytes, digest {got})",
            copied.keys, copied.bytes, there.keys, there.bytes
        ));
    }
    Ok(copied)
}
