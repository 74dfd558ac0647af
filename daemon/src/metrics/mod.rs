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

mod calls;
mod state;
mod text;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kamaji_core::lifecycle::ports::{StepObserver, StepResult};
use kamaji_core::lifecycle::Step;
use kamaji_core::placement::PlacementError;
use kamaji_core::tenant::TenantRecord;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use calls::CallsLayer;
pub use state::{DatastoreFigures, Fleet};
pub use text::{prometheus_text, wants_openmetrics, OPENMETRICS, PROMETHEUS_TEXT};

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
pub(crate) struct DatastoreLabel {
    pub(crate) datastore: String,
}

/// Buckets from 5 ms to about 80 s: steps, calls, holds.
fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Buckets from 1 s to about an hour: whole moves.
fn long_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
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
        let state = state::registry(leading, datastores, fleet.as_ref(), now_unix);
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

#[cfg(test)]
mod tests {
    use super::*;
    use kamaji_core::ids::{DatastoreName, TenantName};
    use kamaji_core::placement::Candidate;
    use kamaji_core::tenant::{Phase, WireSpec};

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
