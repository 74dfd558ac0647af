//! Following a tenant cluster after a write: kamajid's writes return at once, and the provider
//! watches until the tenant is Ready at the new generation, within the timeout.

use std::time::{Duration, Instant};

use kamaji_proto::v1;
use tf_provider::Diagnostics;
use tokio_stream::StreamExt;
use tonic::Code;

use super::report::{phase_name, status_message};
use super::state::TenantClusterState;
use super::TenantClusterResource;
use crate::client::{report, Client};

/// Why waiting ended without the cluster reaching what was asked.
pub(super) enum WaitEnd {
    /// The tenant is gone (a delete finished).
    Gone,
    /// Out of time: the last state seen, and since when kamajid has not answered (and why),
    /// if it has not.
    TimedOut(Option<Box<v1::TenantCluster>>, Option<Unreachable>),
    Failed(tonic::Status),
    /// kamajid gave up on it (no datastore could take it): terminal, no use waiting.
    Unplaceable(Box<v1::TenantCluster>),
    /// Its control plane keeps failing at start with this spec: no use waiting either.
    DoesNotStart(Box<v1::TenantCluster>),
}

/// kamajid not answering a wait: since when, and the last error.
pub(super) struct Unreachable {
    since: time::OffsetDateTime,
    error: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kamajid has not answered since {} ({})",
            super::rfc3339(self.since.unix_timestamp()),
            self.error
        )
    }
}

/// A short label for a phase, for the log.
pub(super) fn phase_label(tc: &v1::TenantCluster) -> (&'static str, String) {
    let st = tc.status.clone().unwrap_or_default();
    (phase_name(st.phase), status_message(tc))
}

/// Whether `tc`'s control plane, at `generation` or later, keeps failing right after it starts
/// (kamajid's `ControlPlaneReady` false for `FailsToStart`).
pub(super) fn does_not_start(tc: &v1::TenantCluster, generation: i64) -> bool {
    tc.status.as_ref().is_some_and(|s| {
        s.observed_generation >= generation
            && s.conditions.iter().any(|c| {
                c.r#type == "ControlPlaneReady"
                    && c.status == v1::ConditionStatus::False as i32
                    && c.reason == "FailsToStart"
            })
    })
}

impl TenantClusterResource {
    pub(super) async fn get(
        &self,
        diags: &mut Diagnostics,
        client: &Client,
        name: &str,
    ) -> Option<Option<v1::TenantCluster>> {
        match crate::client::patiently("GetTenantCluster", || {
            let mut c = client.tenant_clusters();
            let req = v1::GetTenantClusterRequest {
                name: name.to_owned(),
            };
            async move { c.get_tenant_cluster(req).await }
        })
        .await
        {
            Ok(r) => Some(Some(r.into_inner())),
            Err(s) if s.code() == Code::NotFound => Some(None),
            Err(s) => {
                report(
                    diags,
                    &format!("Reading tenant cluster {name:?}"),
                    &client.endpoint,
                    &s,
                );
                None
            }
        }
    }

    pub(super) async fn credentials(
        client: &Client,
        name: &str,
    ) -> Option<v1::TenantClusterCredentials> {
        client
            .tenant_clusters()
            .get_tenant_cluster_credentials(v1::GetTenantClusterCredentialsRequest {
                name: name.to_owned(),
            })
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Follows the tenant until `done` holds, it is gone, or `timeout` passes. Streams break
    /// (kamajid restarts, leader changes); the watch is then re-opened.
    pub(super) async fn wait(
        client: &Client,
        name: &str,
        timeout: Duration,
        done: impl Fn(&v1::TenantCluster) -> bool,
        // Waiting for Ready at this generation: stop at phase Failed, or at a control plane that
        // does not start. A delete (`None`) waits through both.
        generation: Option<i64>,
    ) -> Result<v1::TenantCluster, WaitEnd> {
        let deadline = Instant::now() + timeout;
        let mut last: Option<v1::TenantCluster> = None;
        let mut unreachable: Option<Unreachable> = None;
        let mut logged = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitEnd::TimedOut(last.map(Box::new), unreachable));
            }
            let opened = tokio::time::timeout(
                left,
                client
                    .tenant_clusters()
                    .watch_tenant_cluster(v1::WatchTenantClusterRequest {
                        name: name.to_owned(),
                    }),
            )
            .await;
            let mut stream = match opened {
                Err(_) => return Err(WaitEnd::TimedOut(last.map(Box::new), unreachable)),
                Ok(Ok(s)) => s.into_inner(),
                Ok(Err(s)) if s.code() == Code::NotFound => return Err(WaitEnd::Gone),
                Ok(Err(s)) if retryable(&s) => {
                    if unreachable.is_none() {
                        tracing::warn!(tenant = name, error = %s.message(), "kamajid does not answer; waiting for it");
                        unreachable = Some(Unreachable {
                            since: time::OffsetDateTime::now_utc(),
                            error: s.message().to_owned(),
                        });
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Ok(Err(s)) => return Err(WaitEnd::Failed(s)),
            };
            if let Some(u) = unreachable.take() {
                tracing::info!(tenant = name, since = %super::rfc3339(u.since.unix_timestamp()), "kamajid answers again");
            }
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, stream.next()).await {
                    Err(_) => return Err(WaitEnd::TimedOut(last.map(Box::new), None)),
                    Ok(Some(Ok(tc))) => {
                        let now = phase_label(&tc);
                        if logged.as_ref() != Some(&now) {
                            tracing::info!(tenant = name, phase = now.0, status = %now.1, generation = tc.status.as_ref().map_or(0, |s| s.observed_generation), "tenant cluster");
                            logged = Some(now);
                        }
                        if done(&tc) {
                            return Ok(tc);
                        }
                        if let Some(g) = generation {
                            if tc
                                .status
                                .as_ref()
                                .is_some_and(|s| s.phase == v1::TenantClusterPhase::Failed as i32)
                            {
                                return Err(WaitEnd::Unplaceable(Box::new(tc)));
                            }
                            if does_not_start(&tc, g) {
                                return Err(WaitEnd::DoesNotStart(Box::new(tc)));
                            }
                        }
                        last = Some(tc);
                    }
                    Ok(Some(Err(s))) if s.code() == Code::NotFound => return Err(WaitEnd::Gone),
                    Ok(Some(Err(s))) if !retryable(&s) => return Err(WaitEnd::Failed(s)),
                    Ok(Some(Err(_))) | Ok(None) => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
        }
    }

    /// What a create or an update sent ends in: kamajid's answer reported if it refused, else
    /// the tenant followed until Ready at the written generation (then its credentials read).
    /// On failure the error names the last phase and failing conditions, and the state still
    /// records the cluster.
    pub(super) async fn settle(
        diags: &mut Diagnostics,
        write: Write<'_>,
        sent: Result<tonic::Response<v1::TenantCluster>, tonic::Status>,
    ) -> Option<TenantClusterState> {
        let Write {
            client,
            name,
            verb,
            planned,
        } = write;
        let fallback = match sent {
            Ok(r) => r.into_inner(),
            Err(s) => {
                let doing = if verb == "create" {
                    "Creating"
                } else {
                    "Updating"
                };
                report(
                    diags,
                    &format!("{doing} tenant cluster {name:?}"),
                    &client.endpoint,
                    &s,
                );
                return None;
            }
        };
        let generation = fallback.generation;
        let timeout = planned.timeout(verb);
        // A hibernated cluster is done once its control plane is stopped.
        let want = if planned.hibernated.as_ref_option() == Some(&true) {
            v1::TenantClusterPhase::Hibernated
        } else {
            v1::TenantClusterPhase::Ready
        };
        let ready = |tc: &v1::TenantCluster| {
            let st = tc.status.clone().unwrap_or_default();
            st.phase == want as i32 && st.observed_generation >= generation
        };
        Some(
            match Self::wait(client, name, timeout, ready, Some(generation)).await {
                Ok(tc) => {
                    let creds = Self::credentials(client, name).await;
                    TenantClusterState::from_proto(&tc, creds.as_ref(), planned)
                }
                Err(end) => {
                    let last = match end {
                        WaitEnd::TimedOut(last, unreachable) => {
                            let last = last.map_or(fallback, |b| *b);
                            let st = last.status.clone().unwrap_or_default();
                            let why = status_message(&last);
                            let down = unreachable.map(|u| format!(" {u}.")).unwrap_or_default();
                            diags.root_error(
                            format!(
                                "Tenant cluster {name:?} did not become {}",
                                phase_name(want as i32)
                            ),
                            format!(
                                "{verb} waited {}s; the cluster is {}{}.{down} kamajid keeps reconciling it; \
                                 raise timeouts.{verb} or fix the cause, then apply again.",
                                timeout.as_secs(),
                                phase_name(st.phase),
                                if why.is_empty() { String::new() } else { format!(" ({why})") },
                            ),
                        );
                            last
                        }
                        WaitEnd::Unplaceable(last) => {
                            diags.root_error(
                                format!("Tenant cluster {name:?} could not be created"),
                                format!(
                                "{}. kamajid reserved nothing for it and does not retry it. Make \
                                 room on a datastore or choose another, then apply again: \
                                 Terraform replaces it.",
                                status_message(&last)
                            ),
                            );
                            *last
                        }
                        WaitEnd::DoesNotStart(last) => {
                            diags.root_error(
                                format!("Tenant cluster {name:?} does not start"),
                                format!(
                                    "{}. kamajid keeps retrying it as written; change what the \
                                 error names (the version, extra_args, admission_plugins, the \
                                 OIDC or audit settings, the resources) and apply again.",
                                    status_message(&last)
                                ),
                            );
                            *last
                        }
                        WaitEnd::Gone => {
                            diags.root_error(
                                format!("Tenant cluster {name:?} disappeared"),
                                "It was deleted while Terraform waited for it to become Ready.",
                            );
                            fallback
                        }
                        WaitEnd::Failed(s) => {
                            report(
                                diags,
                                &format!("Waiting for tenant cluster {name:?}"),
                                &client.endpoint,
                                &s,
                            );
                            fallback
                        }
                    };
                    let creds = Self::credentials(client, name).await;
                    TenantClusterState::from_proto(&last, creds.as_ref(), planned)
                }
            },
        )
    }
}

/// A create or an update to follow: which tenant, by which verb (it names the timeout and the
/// error), against which plan.
pub(super) struct Write<'a> {
    pub client: &'a Client,
    pub name: &'a str,
    pub verb: &'static str,
    pub planned: &'a TenantClusterState,
}

/// Statuses worth re-opening a watch for: kamajid restarting or briefly unreachable.
pub(super) fn retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Aborted | Code::Unknown | Code::DeadlineExceeded | Code::Internal
    )
}
