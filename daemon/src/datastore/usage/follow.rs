//! The task that measures one datastore: a scan at one revision, then the watch after it, each
//! event applied to the tally and the writers' meters, and hard walls raised the moment an
//! event takes a tenant past a limit.

use etcd_client::{EventType, GetOptions, WatchOptions};
use kamaji_core::usage::{tenant_of, Change};
use tracing::{debug, info};

use super::transfer::policy_keys;
use super::*;
use crate::etcd::{connect, EtcdTls};

/// Measures one datastore for as long as it is tracked.
pub(super) async fn measure(
    tracker: Arc<UsageTracker>,
    rec: DatastoreRecord,
    state: Shared,
    roles: Arc<tokio::sync::Mutex<()>>,
) {
    let mut pause = RETRY / 2;
    loop {
        let began = std::time::Instant::now();
        let err = match rec.admin_credentials(&tracker.kek) {
            Err(e) => MeasureError::Etcd(e.to_string()),
            Ok(creds) => {
                let tls = EtcdTls {
                    ca_pem: Some(creds.ca_certificate),
                    identity: Some((creds.client_certificate, creds.client_key)),
                };
                match connect(&creds.endpoints, &tls, tracker.timeout).await {
                    Ok(c) => {
                        if let Ok(mut st) = state.write() {
                            st.admin = Some(c.clone());
                        }
                        follow(&tracker, &rec.name, c, &state, &roles).await
                    }
                    Err(e) => e.into(),
                }
            }
        };
        // A refusal that repeats (an unreachable shard, credentials etcd no longer takes) is
        // retried less and less often, and said once per retry, not every five seconds.
        pause = if began.elapsed() > RETRY_MAX {
            RETRY
        } else {
            (pause * 2).min(RETRY_MAX)
        };
        debug!(datastore = %rec.name, reason = %err, "measuring usage again");
        if let MeasureError::Etcd(e) = &err {
            warn!(datastore = %rec.name, error = %e, retry_in = ?pause, "measuring tenants' usage");
        }
        tokio::time::sleep(pause).await;
    }
}

/// One scan, then the watch after it, until something breaks the count.
async fn follow(
    tracker: &UsageTracker,
    ds: &DatastoreName,
    mut c: Client,
    state: &Shared,
    roles: &tokio::sync::Mutex<()>,
) -> MeasureError {
    let revision = match scan(&mut c).await {
        Ok((t, rev)) => {
            if let Ok(mut st) = state.write() {
                st.tally = Some(t);
            }
            rev
        }
        Err(e) => return e,
    };
    let opts = WatchOptions::new()
        .with_range(vec![0])
        .with_prev_key()
        .with_start_revision(revision + 1);
    let mut stream = match c.watch(vec![0], Some(opts)).await {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    loop {
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return MeasureError::Ended,
            Err(e) => return e.into(),
        };
        if resp.canceled() {
            return MeasureError::Compacted(resp.compact_revision());
        }
        let raise = {
            let Ok(mut st) = state.write() else {
                return MeasureError::Ended;
            };
            match apply(tracker, &mut st, resp.events()) {
                Ok(raise) => raise,
                Err(e) => return e,
            }
        };
        if !raise.is_empty() && tracker.leading() {
            raise_walls(tracker, ds, &mut c, state, roles, raise).await;
        }
    }
}

/// Applies one watch response: the tally, each writer's meter, and which tenants' hard walls
/// must go up (higher) now.
fn apply(
    tracker: &UsageTracker,
    st: &mut ShardState,
    events: &[etcd_client::Event],
) -> Result<Vec<(String, Wall)>, MeasureError> {
    let now = tracker.now_ms();
    let mut touched: Vec<String> = Vec::new();
    let mut policy_touched: Vec<String> = Vec::new();
    for ev in events {
        let Some(kv) = ev.kv() else { continue };
        let prev = ev.prev_kv().map(|p| p.value().len());
        let change = match (ev.event_type(), prev) {
            (EventType::Put, _) if kv.version() == 1 => Change::Put {
                key: kv.key(),
                value_len: kv.value().len(),
                prev_len: None,
            },
            (EventType::Put, Some(p)) => Change::Put {
                key: kv.key(),
                value_len: kv.value().len(),
                prev_len: Some(p),
            },
            (EventType::Delete, Some(p)) => Change::Delete {
                key: kv.key(),
                prev_len: p,
            },
            _ => {
                st.tally = None;
                return Err(MeasureError::Unaccounted);
            }
        };
        let Some(t) = st.tally.as_mut() else {
            return Err(MeasureError::Ended);
        };
        t.apply(change);
        let Some(id) = tenant_of(kv.key()) else {
            continue;
        };
        // What the write adds to the shard's history: the new value, or the tombstone.
        let written = match ev.event_type() {
            EventType::Put => kv.key().len() + kv.value().len(),
            EventType::Delete => kv.key().len(),
        } as i64;
        let rate = st
            .guards
            .get(id)
            .and_then(|g| g.limits)
            .map_or(i64::MAX, |l| l.write_bytes_per_second);
        st.meters.entry(id.to_owned()).or_default().record(
            written,
            now,
            rate,
            tracker.history_secs,
        );
        if !touched.iter().any(|t| t == id) {
            touched.push(id.to_owned());
        }
        if let Ok(tid) = TenantId::parse(id) {
            if policy_keys(&tid).iter().any(|k| k.as_bytes() == kv.key()) {
                policy_touched.push(id.to_owned());
            }
        }
    }
    let mut raise = Vec::new();
    for id in touched {
        let Some(g) = st.guards.get_mut(&id) else {
            continue;
        };
        let Some(l) = g.limits else { continue };
        // The soft wall's own keys changed: it is no longer proven (kamajid's own apply proves
        // it again at once).
        if policy_touched.contains(&id) {
            g.soft = false;
        }
        let used = st.tally.as_ref().map_or(0, |t| t.tenant(&id).bytes);
        let debt = st
            .meters
            .get(&id)
            .map_or(0, |m| m.debt(now, l.write_bytes_per_second));
        if let Some(want) = limits::wall_due(used, debt, &l, g.soft, g.walled) {
            if want > g.wall {
                raise.push((id, want));
            }
        }
    }
    Ok(raise)
}

/// Raises the walls of `raise` on their etcd roles at once, and wakes the lifecycle.
async fn raise_walls(
    tracker: &UsageTracker,
    ds: &DatastoreName,
    c: &mut Client,
    state: &Shared,
    roles: &tokio::sync::Mutex<()>,
    raise: Vec<(String, Wall)>,
) {
    let _one = roles.lock().await;
    for (id, want) in raise {
        let Ok(tid) = TenantId::parse(&id) else {
            continue;
        };
        let (guard, before) = {
            let Ok(mut st) = state.write() else { return };
            let Some(g) = st.guards.get_mut(&id) else {
                continue;
            };
            if want <= g.wall {
                continue;
            }
            let before = g.wall;
            g.wall = want;
            (*g, before)
        };
        // From a role this process set read-write, the wall is one change; else the full
        // comparison (a role another process set, a move's hold, a lock).
        let raised = if guard.synced
            && access(&guard) == Access::Walled
            && before == Wall::Down
            && !guard.held
        {
            transfer::wall_up(c, &tid).await
        } else {
            transfer::set_access(c, &tid, access(&guard)).await
        };
        match raised {
            Ok(()) => {
                info!(datastore = %ds, tenant = %id, wall = ?want, "tenant walled off: past its limits");
                if let Some(m) = tracker.metrics.get() {
                    m.wall_raised(ds.as_str());
                }
            }
            Err(e) => {
                warn!(datastore = %ds, tenant = %id, error = %e, "raising a tenant's wall");
                if let Ok(mut st) = state.write() {
                    if let Some(g) = st.guards.get_mut(&id) {
                        g.wall = before;
                    }
                }
            }
        }
    }
    if let Some(w) = &tracker.wake {
        w.notify_one();
    }
}

/// Every key, a page at a time at the revision of the first page.
async fn scan(c: &mut Client) -> Result<(Tally, i64), MeasureError> {
    let mut c = super::transfer::kv(c);
    let mut tally = Tally::default();
    let mut from = vec![0u8];
    let mut revision = 0;
    loop {
        let mut opts = GetOptions::new()
            .with_range(vec![0])
            .with_limit(super::transfer::PAGE);
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let page = c.get(from.clone(), Some(opts)).await?;
        if revision == 0 {
            revision = page.header().map_or(0, |h| h.revision());
        }
        for kv in page.kvs() {
            tally.seed(kv.key(), kv.value().len());
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok((tally, revision)),
        }
    }
}
