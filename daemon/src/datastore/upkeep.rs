//! Carrying out [`kamaji_core::shard`]'s decisions on a real etcd shard, as its root user, once
//! per round of the leader's health loop: every member measured, the shard compacted on
//! schedule, members whose free pages piled up defragmented one at a time (each checked healthy
//! before the next, never while a move holds or copies a tenant on the shard), and a shard that
//! raised `NOSPACE` recovered: compacted, defragmented, its alarm disarmed, with what was done
//! recorded in its status.
//!
//! Caveats: a defragmentation blocks the member while it runs (a single-member shard stops for
//! that long: seconds per GiB); etcd lets any authenticated user compact, so a tenant's own
//! certificate can compact a shard past kamajid's retention. That drops only history, never
//! data; kamajid notices it (its own compaction is then refused as already done) and records it.

use std::time::Duration;

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client, CompactionOptions};

use kamaji_core::datastore::AdminCredentials;
use kamaji_core::shard::{self, MemberSize, Policy, Upkeep};

use crate::etcd::{connect, error_chain, EtcdTls};

/// How long one member's defragmentation may take: it rewrites the whole file.
const DEFRAG_TIMEOUT: Duration = Duration::from_secs(600);

/// One member of a shard as measured this round.
#[derive(Debug, Clone)]
pub struct MemberState {
    pub endpoint: String,
    pub id: u64,
    pub size: MemberSize,
}

/// A shard as measured this round.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub revision: i64,
    /// Members that answered, each by the endpoint it answered on.
    pub members: Vec<MemberState>,
    /// etcd's own quota (0: not reported, before 3.6).
    pub etcd_quota: i64,
    /// Raised alarms: member id and kind.
    pub alarms: Vec<(u64, AlarmType)>,
}

impl Observed {
    /// The largest member's file, and what its data takes.
    pub fn largest(&self) -> MemberSize {
        self.members
            .iter()
            .map(|m| m.size.clone())
            .max_by_key(|s| s.db_size)
            .unwrap_or(MemberSize {
                db_size: 0,
                db_size_in_use: 0,
            })
    }

    pub fn nospace(&self) -> bool {
        self.alarms.iter().any(|(_, a)| *a == AlarmType::Nospace)
    }

    /// `NOSPACE on member 8e9e05c52164694d`, one per alarm.
    pub fn alarm_names(&self) -> Vec<String> {
        self.alarms
            .iter()
            .map(|(id, a)| {
                let kind = match a {
                    AlarmType::Nospace => "NOSPACE",
                    AlarmType::Corrupt => "CORRUPT",
                    AlarmType::None => "NONE",
                };
                format!("{kind} on member {id:x}")
            })
            .collect()
    }
}

/// A shard administered as root.
pub struct ShardAdmin {
    creds: AdminCredentials,
    timeout: Duration,
}

impl ShardAdmin {
    pub fn new(creds: AdminCredentials, timeout: Duration) -> Self {
        Self { creds, timeout }
    }

    fn tls(&self) -> EtcdTls {
        EtcdTls {
            ca_pem: Some(self.creds.ca_certificate.clone()),
            identity: Some((
                self.creds.client_certificate.clone(),
                self.creds.client_key.clone(),
            )),
        }
    }

    async fn client(&self, endpoints: &[String], timeout: Duration) -> Result<Client, String> {
        connect(endpoints, &self.tls(), timeout)
            .await
            .map_err(|e| error_chain(&e))
    }

    /// Measures each endpoint's member and lists the alarms.
    pub async fn observe(&self) -> Result<Observed, String> {
        let mut out = Observed::default();
        let mut last_err = String::new();
        for ep in &self.creds.endpoints {
            let status = match self.client(std::slice::from_ref(ep), self.timeout).await {
                Ok(mut c) => c.status().await.map_err(|e| error_chain(&e)),
                Err(e) => Err(e),
            };
            match status {
                Ok(s) => {
                    let h = s.header();
                    out.revision = out.revision.max(h.map_or(0, |h| h.revision()));
                    out.etcd_quota = out.etcd_quota.max(s.db_size_quota());
                    let id = h.map_or(0, |h| h.member_id());
                    if out.members.iter().all(|m| m.id != id) {
                        out.members.push(MemberState {
                            endpoint: ep.clone(),
                            id,
                            size: MemberSize {
                                db_size: s.db_size(),
                                db_size_in_use: s.raft_used_db_size(),
                            },
                        });
                    }
                }
                Err(e) => last_err = format!("{ep}: {e}"),
            }
        }
        if out.members.is_empty() {
            return Err(last_err);
        }
        let mut c = self.client(&self.creds.endpoints, self.timeout).await?;
        let alarms = c
            .alarm(AlarmAction::Get, AlarmType::None, None)
            .await
            .map_err(|e| error_chain(&e))?;
        out.alarms = alarms
            .alarms()
            .iter()
            .map(|a| (a.member_id(), a.alarm()))
            .collect();
        Ok(out)
    }

    /// Compacts to `revision` (physically, so the freed pages are free when this returns).
    /// `Ok(false)` when the shard was already compacted past it by someone else.
    pub async fn compact(&self, revision: i64) -> Result<bool, String> {
        let mut c = self.client(&self.creds.endpoints, DEFRAG_TIMEOUT).await?;
        match c
            .compact(revision, Some(CompactionOptions::new().with_physical()))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let d = error_chain(&e);
                if d.contains("required revision has been compacted") {
                    Ok(false)
                } else {
                    Err(d)
                }
            }
        }
    }

    /// Defragments the member behind `endpoint`, then checks it answers.
    pub async fn defragment(&self, endpoint: &str) -> Result<MemberSize, String> {
        let one = [endpoint.to_owned()];
        let mut c = self.client(&one, DEFRAG_TIMEOUT).await?;
        c.defragment()
            .await
            .map_err(|e| format!("defragmenting {endpoint}: {}", error_chain(&e)))?;
        let mut c = self.client(&one, self.timeout).await?;
        let s = c
            .status()
            .await
            .map_err(|e| format!("{endpoint} after its defragmentation: {}", error_chain(&e)))?;
        Ok(MemberSize {
            db_size: s.db_size(),
            db_size_in_use: s.raft_used_db_size(),
        })
    }

    /// Disarms the `NOSPACE` alarms of `members`.
    pub async fn disarm(&self, members: &[u64]) -> Result<(), String> {
        let mut c = self.client(&self.creds.endpoints, self.timeout).await?;
        for id in members {
            let mut opts = AlarmOptions::new();
            opts.with_member(*id);
            c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(opts))
                .await
                .map_err(|e| format!("disarming NOSPACE on {id:x}: {}", error_chain(&e)))?;
        }
        Ok(())
    }
}

/// What one round did and found.
#[derive(Debug, Clone)]
pub struct Round {
    pub upkeep: Upkeep,
    /// The shard after this round's work.
    pub observed: Observed,
    /// Why the shard is not healthy after the round (an alarm it could not recover from, a
    /// failed step), for the datastore's status.
    pub trouble: Option<String>,
}

/// One round of upkeep: compaction on schedule, defragmentation where due (not while
/// `busy`: a move holds or copies a tenant on the shard), recovery from `NOSPACE`.
pub async fn round(
    admin: &ShardAdmin,
    prev: &Upkeep,
    quota_bytes: i64,
    policy: &Policy,
    now: i64,
    busy: impl std::future::Future<Output = bool>,
) -> Result<Round, String> {
    let mut obs = admin.observe().await?;
    let mut up = prev.clone();
    let quota = shard::effective_quota(quota_bytes, obs.etcd_quota);

    let nospace = obs.nospace();
    let (target, mark) = shard::compaction(&up, obs.revision, now, policy);
    // Under NOSPACE the mark is compacted to at once, whatever its age.
    let target = target.or_else(|| {
        (nospace && up.mark_revision > up.compacted_revision).then_some(up.mark_revision)
    });
    if let Some(rev) = target {
        compact_to(admin, &mut up, rev, now).await?;
        // What the compaction freed shows in the members' sizes now.
        obs = admin.observe().await?;
    }
    if let Some((r, t)) = mark {
        up.mark_revision = r;
        up.mark_time = t;
    }

    let due: Vec<usize> = obs
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| (nospace && m.size.free() > 0) || shard::defrag_due(&m.size, policy))
        .map(|(i, _)| i)
        .collect();
    // Asked only when a defragmentation is due: it lists the tenants.
    let busy = if due.is_empty() { false } else { busy.await };
    if !busy {
        for i in due {
            obs.members[i].size = admin.defragment(&obs.members[i].endpoint).await?;
            up.defragmented_time = now;
        }
    }

    if nospace {
        let mut largest = obs.largest().db_size;
        if !shard::room_with_history(largest, quota) && !busy {
            // History within the retention still leaves too little room: give it up (tenants'
            // watches relist) rather than leave every tenant read-only, now or in a minute.
            compact_to(admin, &mut up, obs.revision, now).await?;
            for m in &mut obs.members {
                m.size = admin.defragment(&m.endpoint).await?;
            }
            up.defragmented_time = now;
            largest = obs.largest().db_size;
        }
        if shard::may_disarm(largest, quota) {
            let members: Vec<u64> = obs
                .alarms
                .iter()
                .filter(|(_, a)| *a == AlarmType::Nospace)
                .map(|(id, _)| *id)
                .collect();
            admin.disarm(&members).await?;
            up.last_event = format!(
                "recovered from NOSPACE at {now}: compacted to revision {}, defragmented, the \
                 database is {largest} bytes of a quota of {quota}; alarm disarmed",
                up.compacted_revision
            );
            obs = admin.observe().await?;
        } else {
            let in_use = obs.largest().db_size_in_use;
            let why = if busy {
                "a move holds a tenant's writes on it: defragmentation waits for it".to_owned()
            } else {
                format!(
                    "compacted and defragmented, the data still takes {in_use} bytes of a \
                     quota of {quota}: move tenants off (drain) or raise etcd's \
                     --quota-backend-bytes"
                )
            };
            return Ok(Round {
                trouble: Some(format!("NOSPACE: etcd refuses writes; {why}")),
                upkeep: up,
                observed: obs,
            });
        }
    }
    let trouble = (!obs.alarms.is_empty()).then(|| {
        format!(
            "etcd alarm raised: {}; the datastore refuses writes",
            obs.alarm_names().join(", ")
        )
    });
    Ok(Round {
        upkeep: up,
        observed: obs,
        trouble,
    })
}

async fn compact_to(admin: &ShardAdmin, up: &mut Upkeep, rev: i64, now: i64) -> Result<(), String> {
    if rev <= up.compacted_revision {
        return Ok(());
    }
    if !admin.compact(rev).await? {
        up.last_event = format!(
            "at {now} the datastore was already compacted past revision {rev} by another \
             client (any etcd user may compact): tenants' watches may have had to relist"
        );
    }
    up.compacted_revision = rev;
    up.compacted_time = now;
    Ok(())
}
