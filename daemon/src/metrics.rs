//! kamajid's metrics, served by [`crate::observe`] at `GET /metrics` in OpenMetrics text (when the
//! scraper asks for it, as Prometheus does) or Prometheus' text format 0.0.4 (otherwise).
//!
//! Two kinds of series:
//! - events, counted as they happen: lifecycle steps (by step and result), placement refusals
//!   (by reason), moves and their write holds, walls raised, gRPC calls (by method and code);
//! - state, read when scraped: the datastores (from kamajid's records, a handful of reads) and
//!   the tenants (from the leader's last listing, which its lifecycle makes every round anyway,
//!   so a scrape costs no read of thousands of records; other replicas leave them out).
//!
//! Labels are bounded: step, result, reason, phase, condition and code come from fixed sets; a
//! gRPC method is a method of the API (a path the server does not serve is counted as
//! `unknown`); `datastore` is one per registered datastore; `tenant` appears on two gauges only,
//! one series each per tenant (5000 tenants: 10,000 series, read at scrape time, never on a hot
//! path).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kamaji_core::lifecycle::ports::{StepObserver, StepResult};
use kamaji_core::lifecycle::Step;
use kamaji_core::placement::{Candidate, PlacementError};
use kamaji_core::tenant::{Phase, TenantRecord};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of Prometheus' text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatastoreLabel {
    datastore: String,
}

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

/// Buckets from 5 ms to about 80 s: steps, calls, holds.
fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Buckets from 1 s to about an hour: whole moves.
fn long_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
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

const PHASES: [Phase; 7] = [
    Phase::Provisioning,
    Phase::Ready,
    Phase::Upgrading,
    Phase::Deleting,
    Phase::Degraded,
    Phase::Failed,
    Phase::Moving,
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

/// Everything kamajid counts, and the registry the events are kept in.
pub struct Metrics {
    events: Registry,
    steps: Family<StepLabels, Histogram, fn() -> Histogram>,
    refusals: Family<ReasonLabel, Counter>,
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<MethodLabel, Histogram, fn() -> Histogram>,
    moves: Histogram,
    write_holds: Histogram,
    walls: Family<DatastoreLabel, Counter>,
    connections: Counter,
    fleet: Mutex<Option<(Fleet, Instant)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("kamaji");
        let steps = Family::<_, _, fn() -> Histogram>::new_with_constructor(seconds_buckets as _);
        let refusals = Family::<ReasonLabel, Counter>::default();
        // Every reason from zero, so `increase()` sees the first refusal of each.
        for reason in kamaji_core::placement::REASONS {
            let _ = refusals.get_or_create(&ReasonLabel { reason });
        }
        let calls = Family::default();
        let call_seconds =
            Family::<_, _, fn() -> Histogram>::new_with_constructor(seconds_buckets as _);
        let moves = long_buckets();
        let write_holds = seconds_buckets();
        let walls = Family::default();
        let connections = Counter::default();
        r.register(
            "build",
            "The kamajid build serving",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "lifecycle_step_duration_seconds",
            "Lifecycle steps performed, by step and result (ran, waiting, conflict, failed)",
            steps.clone(),
        );
        r.register(
            "placement_refusals",
            "Tenants placement found no datastore for, by what kept them off (a tenant refused by several datastores for different reasons counts once per reason)",
            refusals.clone(),
        );
        r.register(
            "grpc_server_handled",
            "API calls answered, by method and gRPC code",
            calls.clone(),
        );
        r.register(
            "grpc_server_handling_seconds",
            "How long API calls took, by method",
            call_seconds.clone(),
        );
        r.register(
            "move_duration_seconds",
            "Moves of tenants between datastores, from reservation to cleanup",
            moves.clone(),
        );
        r.register(
            "move_write_hold_seconds",
            "How long each move held its tenant's writes (from the hold to the switch)",
            write_holds.clone(),
        );
        r.register(
            "quota_walls_raised",
            "Walls raised on tenants past their storage quota or write budget, by datastore",
            walls.clone(),
        );
        r.register(
            "grpc_server_connections",
            "TLS connections accepted by the API (a client keeps one for all its calls)",
            connections.clone(),
        );
        Self {
            events: r,
            steps,
            refusals,
            calls,
            call_seconds,
            moves,
            write_holds,
            walls,
            connections,
            fleet: Mutex::new(None),
        }
    }

    /// An API call to `method` (a served path such as `/kamaji.v1.Datastores/ListDatastores`)
    /// ended with `code` after `elapsed`.
    pub fn call(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        // The router answers Unimplemented for a path it does not serve: such paths are not
        // kept as labels, so a client cannot grow the series.
        let method = if code == tonic::Code::Unimplemented {
            "unknown".to_owned()
        } else {
            method.to_owned()
        };
        self.calls
            .get_or_create(&CallLabels {
                method: method.clone(),
                code: format!("{code:?}"),
            })
            .inc();
        self.call_seconds
            .get_or_create(&MethodLabel { method })
            .observe(elapsed.as_secs_f64());
    }

    /// The API accepted a TLS connection.
    pub fn connection_accepted(&self) {
        self.connections.inc();
    }

    /// A wall went up on a tenant of `datastore`.
    pub fn wall_raised(&self, datastore: &str) {
        self.walls
            .get_or_create(&DatastoreLabel {
                datastore: datastore.to_owned(),
            })
            .inc();
    }

    /// The text of a scrape: events, then the state given (`fleet` only on the leader).
    pub fn render(
        &self,
        openmetrics: bool,
        leading: bool,
        datastores: &[DatastoreFigures],
        now_unix: i64,
    ) -> String {
        let fleet = if leading {
            self.fleet
                .lock()
                .ok()
                .and_then(|f| f.as_ref().map(|(f, _)| f.clone()))
        } else {
            None
        };
        // Each datastore's wall count from zero (a first raise is then an increase).
        for d in datastores {
            let _ = self.walls.get_or_create(&DatastoreLabel {
                datastore: d.candidate.name.to_string(),
            });
        }
        let state = state_registry(leading, datastores, fleet.as_ref(), now_unix);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut out, &self.events);
        let _ = encode_registry(&mut out, &state);
        let _ = encode_eof(&mut out);
        if openmetrics {
            out
        } else {
            prometheus_text(&out)
        }
    }
}

impl StepObserver for Metrics {
    fn performed(&self, before: &TenantRecord, step: Step, result: StepResult, elapsed: Duration) {
        self.steps
            .get_or_create(&StepLabels {
                step: format!("{step:?}"),
                result: result.as_str(),
            })
            .observe(elapsed.as_secs_f64());
        if result != StepResult::Ran {
            return;
        }
        let now = kamaji_core::lifecycle::now_unix();
        match (&before.moving, step) {
            (Some(m), Step::MoveSwitch) if m.held_at > 0 => {
                self.write_holds.observe((now - m.held_at).max(0) as f64)
            }
            (Some(m), Step::MoveCleanup) if m.started_at > 0 => {
                self.moves.observe((now - m.started_at).max(0) as f64)
            }
            _ => {}
        }
    }

    fn placement_refused(&self, error: &PlacementError) {
        for reason in error.reasons() {
            self.refusals.get_or_create(&ReasonLabel { reason }).inc();
        }
    }

    fn round(&self, tenants: &[TenantRecord]) {
        let fleet = Fleet::of(tenants);
        if let Ok(mut f) = self.fleet.lock() {
            *f = Some((fleet, Instant::now()));
        }
    }
}

/// The series read at scrape time, in a registry of their own (built per scrape, so a datastore
/// or tenant that is gone leaves no stale series).
fn state_registry(
    leading: bool,
    datastores: &[DatastoreFigures],
    fleet: Option<&Fleet>,
    now_unix: i64,
) -> Registry {
    let mut r = Registry::with_prefix("kamaji");
    let leader: Gauge = Gauge::default();
    leader.set(i64::from(leading));
    r.register(
        "leader",
        "1 on the replica that holds the leader lease (runs tenants' lifecycles and datastore upkeep)",
        leader,
    );
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
    let drains: Gauge = Gauge::default();
    drains.set(
        datastores
            .iter()
            .filter(|d| d.candidate.draining && d.candidate.tenants > 0)
            .count() as i64,
    );
    r.register(
        "drains_in_progress",
        "Datastores being drained that still hold tenants",
        drains,
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
    let moving: Gauge = Gauge::default();
    moving.set(fleet.moving);
    r.register(
        "moves_in_progress",
        "Tenants moving between datastores now",
        moving,
    );
    let walled: Gauge = Gauge::default();
    walled.set(fleet.walled);
    r.register(
        "tenants_walled",
        "Tenants walled off (reads only) for being past their storage quota or write budget",
        walled,
    );
    r
}

/// OpenMetrics text as Prometheus' text format 0.0.4 says it: a counter's family is named with
/// its `_total`, an info family is a gauge named `_info`, and there is no `# EOF` or `# UNIT`.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, ty)) = rest.split_once(' ') {
                types.insert(name, ty);
            }
        }
    }
    let rename = |name: &str| -> (String, Option<&'static str>) {
        match types.get(name).copied() {
            Some("counter") => (format!("{name}_total"), None),
            Some("info") => (format!("{name}_info"), Some("gauge")),
            Some("unknown") => (name.to_owned(), Some("untyped")),
            _ => (name.to_owned(), None),
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", rename(name).0));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, ""));
            let (renamed, new_ty) = rename(name);
            out.push_str(&format!("# TYPE {renamed} {}\n", new_ty.unwrap_or(ty)));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether a scraper's `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Wraps the API so every call is counted ([`Metrics::call`]).
#[derive(Clone)]
pub struct CallsLayer(pub Arc<Metrics>);

impl<S> tower_layer::Layer<S> for CallsLayer {
    type Service = Calls<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Calls {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The service [`CallsLayer`] makes.
#[derive(Clone)]
pub struct Calls<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for Calls<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            // Errors of unary calls come in the headers (tonic answers them "trailers-only");
            // a reply without grpc-status there carries OK in its trailers.
            let code = match &res {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from),
                Err(_) => tonic::Code::Unknown,
            };
            metrics.call(&method, code, started.elapsed());
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kamaji_core::ids::{DatastoreName, TenantName};
    use kamaji_core::tenant::WireSpec;

    fn tenant(name: &str, phase: Phase) -> TenantRecord {
        let mut t = TenantRecord::new(
            TenantName::parse(name).unwrap(),
            WireSpec(String::new()),
            0,
            0,
        );
        t.phase = phase;
        t.set_condition("ControlPlaneReady", phase == Phase::Ready, "R", "", 0);
        t
    }

    fn ds(name: &str, tenants: u32) -> DatastoreFigures {
        DatastoreFigures {
            candidate: Candidate {
                name: DatastoreName::parse(name).unwrap(),
                ready: true,
                schedulable: true,
                draining: false,
                labels: Default::default(),
                quota_bytes: 1 << 30,
                max_tenants: None,
                tenants,
                reserved_bytes: 64 << 20,
                used_bytes: 3 << 20,
                file_bytes: 5 << 20,
            },
            healthy: true,
            alarms: 0,
        }
    }

    #[test]
    fn a_scrape_shows_the_fleet_the_leader_listed_and_only_on_the_leader() {
        let m = Metrics::new();
        m.round(&[
            tenant("a", Phase::Ready),
            tenant("b", Phase::Ready),
            tenant("c", Phase::Degraded),
        ]);
        let text = m.render(true, true, &[ds("one", 3)], 0);
        assert!(text.contains("kamaji_tenants{phase=\"Ready\"} 2"), "{text}");
        assert!(
            text.contains("kamaji_tenants{phase=\"Failed\"} 0"),
            "{text}"
        );
        assert!(text.contains("kamaji_tenant_phase{tenant=\"c\",phase=\"Degraded\"} 1"));
        assert!(text.contains(
            "kamaji_tenants_by_condition{condition=\"ControlPlaneReady\",status=\"false\"} 1"
        ));
        assert!(text.contains("kamaji_datastore_tenants{datastore=\"one\"} 3"));
        assert!(text.contains("kamaji_leader 1"));
        assert!(text.ends_with("# EOF\n"));
        let follower = m.render(true, false, &[ds("one", 3)], 0);
        assert!(!follower.contains("kamaji_tenants{"), "{follower}");
        assert!(follower.contains("kamaji_leader 0"));
    }

    #[test]
    fn refusals_count_each_reason_and_unknown_paths_do_not_become_labels() {
        let m = Metrics::new();
        m.placement_refused(&PlacementError::NoCandidate(vec![
            (
                DatastoreName::parse("a").unwrap(),
                kamaji_core::placement::Refusal::Full {
                    free_bytes: 0,
                    needed_bytes: 1,
                },
            ),
            (
                DatastoreName::parse("b").unwrap(),
                kamaji_core::placement::Refusal::Full {
                    free_bytes: 0,
                    needed_bytes: 1,
                },
            ),
        ]));
        m.call(
            "/kamaji.v1.Datastores/ListDatastores",
            tonic::Code::Ok,
            Duration::from_millis(3),
        );
        m.call("/made/up/path", tonic::Code::Unimplemented, Duration::ZERO);
        let text = m.render(true, false, &[], 0);
        assert!(
            text.contains("kamaji_placement_refusals_total{reason=\"full\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "kamaji_grpc_server_handled_total{method=\"/kamaji.v1.Datastores/ListDatastores\",code=\"Ok\"} 1"
        ));
        assert!(text.contains("method=\"unknown\",code=\"Unimplemented\"} 1"));
        assert!(!text.contains("made/up"));
    }

    #[test]
    fn prometheus_text_names_counters_with_total_and_has_no_eof() {
        let m = Metrics::new();
        m.wall_raised("one");
        let text = prometheus_text(&m.render(true, false, &[], 0));
        assert!(
            text.contains("# TYPE kamaji_quota_walls_raised_total counter"),
            "{text}"
        );
        assert!(text.contains("# HELP kamaji_quota_walls_raised_total "));
        assert!(text.contains("kamaji_quota_walls_raised_total{datastore=\"one\"} 1"));
        assert!(text.contains("# TYPE kamaji_build_info gauge"));
        assert!(text.contains("kamaji_build_info{version=\""));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn a_move_observes_its_hold_and_its_length() {
        let m = Metrics::new();
        let mut t = tenant("a", Phase::Moving);
        let now = kamaji_core::lifecycle::now_unix();
        t.moving = Some(kamaji_core::tenant::Move {
            from: DatastoreName::parse("one").unwrap(),
            to: DatastoreName::parse("two").unwrap(),
            stage: kamaji_core::tenant::MoveStage::Copied,
            started_at: now - 30,
            held_at: now - 2,
            copied_keys: 0,
            copied_bytes: 0,
        });
        m.performed(
            &t,
            Step::MoveSwitch,
            StepResult::Ran,
            Duration::from_millis(5),
        );
        m.performed(
            &t,
            Step::MoveCleanup,
            StepResult::Ran,
            Duration::from_millis(5),
        );
        let text = m.render(true, false, &[], 0);
        assert!(
            text.contains("kamaji_move_write_hold_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("kamaji_move_duration_seconds_count 1"));
        assert!(text.contains(
            "kamaji_lifecycle_step_duration_seconds_count{step=\"MoveSwitch\",result=\"ran\"} 1"
        ));
    }
}
