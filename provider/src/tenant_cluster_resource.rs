//! Resource `kamaji_tenant_cluster`: a managed Kubernetes control plane.
//!
//! - Plan: every known input is checked with the same contract kamajid applies; a version
//!   change must move one minor up (or a patch up) unless the cluster is being replaced anyway;
//!   placement, the network plan and the certificate names force replacement; destroying (or
//!   replacing) a cluster with `deletion_protection` is refused at plan.
//! - Apply: kamajid's writes return at once; the provider follows the tenant with Watch until it
//!   is Ready at the new generation, within `timeouts`. A create that times out leaves the
//!   cluster in state, tainted, so nothing is lost and the next apply replaces it.
//! - A cluster deleted outside Terraform reads as gone and is planned for creation.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use kamaji_model::change::IMMUTABLE;
use kamaji_proto::errors::FieldError;
use kamaji_proto::tenant as contract;
use kamaji_proto::v1;
use kamaji_proto::validate;
use tf_provider::schema::{Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};
use tokio_stream::StreamExt;
use tonic::Code;

use crate::client::{report, Client, Shared};
use crate::plan_memo::{already_exists, NameSet, PlannedDatastores};
use crate::schema::tenant_docs::*;
use crate::schema::*;
use crate::tenant_cluster_state::{attribute_path, field_diag, status_message, TenantClusterState};

pub struct TenantClusterResource {
    pub client: Shared,
    pub own_names: NameSet,
    /// Tenants this plan destroys, shared with the datastore resource.
    pub leaving: NameSet,
    /// Datastores this plan registers, see [`crate::plan_memo`].
    pub datastores_arriving: PlannedDatastores,
    /// Tenant clusters this plan creates (bootstrap tokens may name them).
    pub arriving: NameSet,
}

pub fn schema() -> Schema {
    let requirements = || {
        group(
            TC_REQUIREMENTS,
            attributes([
                (
                    "cpu_request",
                    optional(string(), "CPU request, e.g. `250m`."),
                ),
                (
                    "memory_request",
                    optional(string(), "Memory request, e.g. `256Mi`."),
                ),
                (
                    "cpu_limit",
                    optional(string(), "CPU limit; unset means none."),
                ),
                (
                    "memory_limit",
                    optional(string(), "Memory limit; unset means none."),
                ),
            ]),
            Default::default(),
        )
    };
    let args = |component: &str| {
        optional(
            map_of_strings(),
            &format!("Extra `--flag=value` arguments for {component}, without the leading `--`. Flags kamajid manages (etcd, certificates, ports, service CIDR) are refused."),
        )
    };
    Schema {
        version: 1,
        block: Block {
            version: 1,
            description: Description::markdown(TC_DESCRIPTION),
            attributes: attributes([
                ("id", computed(string(), "The tenant cluster name; also its import ID.")),
                ("name", required(string(), TC_NAME)),
                ("kubernetes_version", required(string(), TC_VERSION)),
                ("replicas", optional_default(number(), TC_REPLICAS)),
                ("datastore", optional_default(string(), TC_DATASTORE)),
                ("datastore_selector", optional(map_of_strings(), TC_SELECTOR)),
                ("admission_plugins", optional(list_of_strings(), TC_ADMISSION)),
                ("labels", optional(map_of_strings(), TC_LABELS)),
                ("deletion_protection", optional_default(boolean(), TC_PROTECTION)),
                ("uid", computed(string(), TC_UID)),
                ("endpoint", computed(string(), TC_ENDPOINT)),
                ("cluster_ca_certificate", computed(string(), TC_CA)),
                ("ca_cert_hash", computed(string(), TC_CA_HASH)),
                ("admin_kubeconfig", sensitive(computed(string(), TC_KUBECONFIG))),
                ("client_certificate", computed(string(), TC_CLIENT_CERT)),
                ("client_key", sensitive(computed(string(), TC_CLIENT_KEY))),
                ("current_version", computed(string(), TC_CURRENT_VERSION)),
                ("status", computed(string(), TC_STATUS)),
                ("status_message", computed(string(), TC_STATUS_MESSAGE)),
                ("certificates_expire_at", computed(string(), TC_CERTS_EXPIRE)),
                ("encryption_key_rotation", computed(number(), TC_KEY_ROTATION_IN_EFFECT)),
                ("storage_quota_bytes", optional(number(), TC_STORAGE_QUOTA)),
                ("write_budget_bytes_per_second", optional(number(), TC_WRITE_BUDGET)),
                ("storage_used_bytes", computed(number(), TC_STORAGE_USED)),
                ("storage_keys", computed(number(), TC_STORAGE_KEYS)),
                ("storage_write_bytes_per_second", computed(number(), TC_STORAGE_WRITE_RATE)),
                ("storage_history_bytes", computed(number(), TC_STORAGE_HISTORY)),
            ]),
            blocks: [
                (
                    "network".to_owned(),
                    group(
                        "How the control plane is reached and the cluster's address plan.",
                        attributes([
                            ("service_cidr", optional_default(string(), TC_SERVICE_CIDR)),
                            ("pod_cidr", optional_default(string(), TC_POD_CIDR)),
                            ("dns_service_ip", optional_default(string(), TC_DNS_IP)),
                            ("port", optional_default(number(), TC_PORT)),
                            ("service_type", optional_default(string(), TC_SERVICE_TYPE)),
                            ("endpoint_address", optional(string(), TC_ENDPOINT_ADDRESS)),
                            ("extra_sans", optional(list_of_strings(), TC_EXTRA_SANS)),
                            ("authorized_networks", optional(list_of_strings(), TC_AUTHORIZED_NETWORKS)),
                        ]),
                        Default::default(),
                    ),
                ),
                (
                    "addons".to_owned(),
                    group(
                        "Add-ons kamajid installs inside the cluster, at versions matching `kubernetes_version`. Turning one off removes it.",
                        attributes([
                            ("coredns", optional_default(boolean(), "CoreDNS as the cluster DNS (`kube-dns` Service at `network.dns_service_ip`). Default `true`.")),
                            ("kube_proxy", optional_default(boolean(), "kube-proxy on every node. Turn off for a CNI that replaces it. Default `true`.")),
                        ]),
                        Default::default(),
                    ),
                ),
                (
                    "encryption".to_owned(),
                    group(
                        TC_ENCRYPTION,
                        attributes([
                            ("resources", optional(list_of_strings(), TC_ENCRYPTION_RESOURCES)),
                            ("key_rotation", optional_default(number(), TC_KEY_ROTATION)),
                        ]),
                        Default::default(),
                    ),
                ),
                (
                    "credential_rotation".to_owned(),
                    group(
                        TC_CREDENTIAL_ROTATION,
                        attributes([
                            ("generation", optional_default(number(), "Which rotation. Raise it by one, with `phase = \"started\"`, to start another. Defaults to 0 (never rotated).")),
                            ("phase", optional_default(string(), "`started`: a new CA and service-account key are trusted beside the old ones, and the credentials kamajid issues (the admin kubeconfig, component certificates) are re-issued with the new ones; move clients and nodes over. `completed`: the old CA and key are withdrawn, and what they signed stops working. Defaults to `completed`.")),
                        ]),
                        Default::default(),
                    ),
                ),
                (
                    "authentication".to_owned(),
                    group(
                        "Who may sign in besides certificate and service-account holders.",
                        Default::default(),
                        [(
                            "oidc".to_owned(),
                            tf_provider::schema::NestedBlock::List(Block {
                                version: 1,
                                description: Description::markdown(TC_OIDC),
                                attributes: attributes([
                                    ("issuer_url", required(string(), "`https` URL of the issuer; its discovery document is at `/.well-known/openid-configuration` under it.")),
                                    ("client_id", required(string(), "The audience (`aud`) the issuer's ID tokens carry for this cluster.")),
                                    ("username_claim", optional_default(string(), "Claim the username is taken from. Defaults to `sub`.")),
                                    ("username_prefix", optional(string(), "Prefix of every username from this issuer, e.g. `oidc:`, so they cannot pass for other users.")),
                                    ("groups_claim", optional(string(), "Claim the groups are taken from; unset means no groups.")),
                                    ("groups_prefix", optional(string(), "Prefix of every group from this issuer.")),
                                    ("ca_certificate", optional(string(), "PEM CA of the issuer's serving certificate; unset means the host's trust store.")),
                                ]),
                                ..Default::default()
                            }),
                        )]
                        .into(),
                    ),
                ),
                (
                    "audit".to_owned(),
                    tf_provider::schema::NestedBlock::Optional(Block {
                        version: 1,
                        description: Description::markdown(TC_AUDIT),
                        attributes: attributes([
                            ("preset", optional(string(), "`metadata`, `request` or `request_response`: what each event records. Secrets, ConfigMaps and token requests are recorded at `metadata` whatever the preset; health checks not at all.")),
                            ("policy", optional(string(), "An `audit.k8s.io/v1` Policy document (YAML), instead of a preset.")),
                            ("max_age_days", optional_default(number(), "Days audit log files are kept, 1 to 3650. Defaults to 30.")),
                        ]),
                        ..Default::default()
                    }),
                ),
                (
                    "resources".to_owned(),
                    group(
                        "CPU and memory for each control-plane component, per replica. Unset values use kamajid's defaults.",
                        Default::default(),
                        [
                            ("apiserver".to_owned(), requirements()),
                            ("controller_manager".to_owned(), requirements()),
                            ("scheduler".to_owned(), requirements()),
                        ]
                        .into(),
                    ),
                ),
                (
                    "extra_args".to_owned(),
                    group(
                        "Extra command-line flags per component.",
                        attributes([
                            ("apiserver", args("kube-apiserver")),
                            ("controller_manager", args("kube-controller-manager")),
                            ("scheduler", args("kube-scheduler")),
                        ]),
                        Default::default(),
                    ),
                ),
                (
                    "timeouts".to_owned(),
                    group(
                        "How long apply waits for the cluster to become Ready (create, update) or to be gone (delete), e.g. `30m`.",
                        attributes([
                            ("create", optional(string(), "Defaults to `20m`.")),
                            ("update", optional(string(), "Defaults to `20m`.")),
                            ("delete", optional(string(), "Defaults to `10m`.")),
                        ]),
                        Default::default(),
                    ),
                ),
            ]
            .into(),
            ..Default::default()
        },
    }
}

/// The attributes whose change replaces the cluster: its name, and the fields kamajid fixes at
/// creation ([`IMMUTABLE`]) that `changes` (the model's verdict) refuses or are not known yet.
fn replacements(
    prior: &TenantClusterState,
    planned: &TenantClusterState,
    changes: &[FieldError],
    unknown: &[String],
) -> Vec<AttributePath> {
    let mut out = Vec::new();
    if prior.name != planned.name {
        out.push(AttributePath::new("name"));
    }
    for f in IMMUTABLE {
        if unknown.iter().any(|u| u == f) || changes.iter().any(|e| e.field == f) {
            out.push(attribute_path(f));
        }
    }
    out
}

/// Whether a refusal can be judged now: no value of its block is still unknown (kamajid judges
/// those at apply).
fn judged_now(e: &FieldError, unknown: &[String]) -> bool {
    let block = |f: &str| f.split(['.', '[']).next().unwrap_or_default().to_owned();
    !unknown.iter().any(|u| block(u) == block(&e.field))
}

/// The spec in state before and the spec to send, and what is unknown in the latter. The
/// `datastore` in state is where kamajid placed the cluster; it is sent only when the
/// configuration names one: a cluster placed by kamajid stays free to move (a drain, another
/// selector), and naming another datastore moves it.
fn specs_to_send(
    prior: &TenantClusterState,
    planned: &TenantClusterState,
    config: &TenantClusterState,
) -> (v1::TenantClusterSpec, v1::TenantClusterSpec, Vec<String>) {
    let named = !config.datastore.is_null();
    let (mut old, mut new) = (prior.clone(), planned.clone());
    if !named {
        old.datastore = Value::Null;
        new.datastore = Value::Null;
    }
    let (old_spec, _) = old.spec();
    let (new_spec, unknown) = new.spec();
    (old_spec, new_spec, unknown)
}

/// Why waiting ended without the cluster reaching what was asked.
enum WaitEnd {
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
struct Unreachable {
    since: time::OffsetDateTime,
    error: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kamajid has not answered since {} ({})",
            crate::tenant_cluster_state::rfc3339(self.since.unix_timestamp()),
            self.error
        )
    }
}

/// A short label for a phase, for the log.
fn phase_label(tc: &v1::TenantCluster) -> (&'static str, String) {
    let st = tc.status.clone().unwrap_or_default();
    (
        crate::tenant_cluster_state::phase_name(st.phase),
        status_message(tc),
    )
}

/// Whether `tc`'s control plane, at `generation` or later, keeps failing right after it starts
/// (kamajid's `ControlPlaneReady` false for `FailsToStart`).
fn does_not_start(tc: &v1::TenantCluster, generation: i64) -> bool {
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
    async fn get(
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

    async fn credentials(client: &Client, name: &str) -> Option<v1::TenantClusterCredentials> {
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
    async fn wait(
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
                tracing::info!(tenant = name, since = %crate::tenant_cluster_state::rfc3339(u.since.unix_timestamp()), "kamajid answers again");
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
    async fn settle(
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
        let ready = |tc: &v1::TenantCluster| {
            let st = tc.status.clone().unwrap_or_default();
            st.phase == v1::TenantClusterPhase::Ready as i32 && st.observed_generation >= generation
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
                            format!("Tenant cluster {name:?} did not become Ready"),
                            format!(
                                "{verb} waited {}s; the cluster is {}{}.{down} kamajid keeps reconciling it; \
                                 raise timeouts.{verb} or fix the cause, then apply again.",
                                timeout.as_secs(),
                                crate::tenant_cluster_state::phase_name(st.phase),
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
struct Write<'a> {
    client: &'a Client,
    name: &'a str,
    verb: &'static str,
    planned: &'a TenantClusterState,
}

/// Statuses worth re-opening a watch for: kamajid restarting or briefly unreachable.
fn retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Aborted | Code::Unknown | Code::DeadlineExceeded | Code::Internal
    )
}

fn name_of(s: &TenantClusterState) -> String {
    s.name
        .as_ref_option()
        .or(s.id.as_ref_option())
        .cloned()
        .unwrap_or_default()
}

fn protected_error(diags: &mut Diagnostics, name: &str, what: &str) {
    diags.error(
        "Tenant cluster is protected from deletion",
        format!(
            "{what} tenant cluster {name:?} would delete it, and it has deletion_protection = true. \
             Set deletion_protection = false and apply first."
        ),
        AttributePath::new("deletion_protection"),
    );
}

#[async_trait]
impl Resource for TenantClusterResource {
    type State<'a> = TenantClusterState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(schema())
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        config.check(diags);
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.client.get(diags).await?;
        let name = name_of(&state);
        match self.get(diags, &client, &name).await {
            Some(Some(tc)) => {
                // Ours: a tainted one is planned next as a create of this name.
                self.own_names.mark(&name);
                // Credentials follow from the CA, the endpoint and the renewal of the leaf
                // certificates; a refresh of an unchanged tenant keeps the ones in state and
                // saves a round trip per resource.
                let st = tc.status.clone().unwrap_or_default();
                let expiry = st
                    .certificates_expire_at
                    .as_ref()
                    .map(|t| crate::tenant_cluster_state::rfc3339(t.seconds));
                let unchanged = state.admin_kubeconfig.is_value()
                    && state.certificates_expire_at.as_ref_option() == expiry.as_ref()
                    && state.endpoint.as_ref_option().map(String::as_str)
                        == Some(st.endpoint.as_str())
                    && state
                        .cluster_ca_certificate
                        .as_ref_option()
                        .map(String::as_str)
                        == Some(st.cluster_ca_certificate.as_str());
                let creds = if unchanged {
                    None
                } else {
                    Self::credentials(&client, &name).await
                };
                Some((
                    TenantClusterState::from_proto(&tc, creds.as_ref(), &state),
                    private,
                ))
            }
            // Deleted outside Terraform: report it gone so the plan re-creates it.
            Some(None) => None,
            None => Some((state, private)),
        }
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        config.check(diags);
        let mut planned = proposed.with_defaults().unknown_outputs();
        planned.id = planned.name.clone();
        if planned.datastore.is_null() {
            planned.datastore = Value::Unknown;
        }
        if let Some(name) = self.own_names.foreign(&planned.name) {
            if let Some(client) = self.client.get(diags).await {
                // Also surfaces a wrong token or an unreachable kamajid at plan rather than apply.
                if let Some(Some(_)) = self.get(diags, &client, name).await {
                    already_exists(diags, "Tenant cluster", name);
                }
            }
            // A new cluster (not one of ours planned again as a replacement) has rotated nothing.
            if let Some(Value::Value(g)) = config
                .credential_rotation
                .as_ref_option()
                .map(|r| &r.generation)
            {
                if g.whole().is_ok_and(|g| g > 0) {
                    diags.error(
                        "Invalid credential_rotation.generation",
                        "a new cluster starts at generation 0: its credentials have never been \
                         rotated. Leave the block out (or set 0), and raise it to rotate once the \
                         cluster exists.",
                        crate::tenant_cluster_state::attribute_path(
                            "credential_rotation.generation",
                        ),
                    );
                }
            }
        }
        if let Value::Value(name) = &planned.name {
            self.arriving.mark(name);
        }
        // What kamajid would refuse (a datastore that does not exist or cannot take the tenant,
        // a selector no datastore matches, a setting its runtime cannot run) is an error now,
        // not after a timeout; datastores this plan registers first count.
        if let (Value::Value(name), Some(arriving)) =
            (&planned.name, self.datastores_arriving.known())
        {
            let mut source = planned.clone();
            source.datastore = config.datastore.clone();
            let (spec, unknown) = source.spec();
            if let (true, Some(client)) = (unknown.is_empty(), self.client.get(diags).await) {
                if let Err(s) = client
                    .tenant_clusters()
                    .create_tenant_cluster(v1::CreateTenantClusterRequest {
                        name: name.clone(),
                        spec: Some(spec),
                        validate_only: true,
                        planned_datastores: arriving
                            .into_iter()
                            .map(|(name, labels)| v1::PlannedDatastore {
                                name,
                                labels: labels.into_iter().collect(),
                            })
                            .collect(),
                    })
                    .await
                {
                    report(
                        diags,
                        &format!("Checking tenant cluster {name:?}"),
                        &client.endpoint,
                        &s,
                    );
                }
            }
        }
        Some((planned, Default::default()))
    }

    async fn plan_update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        config.check(diags);
        let mut planned = proposed;
        // Unset optional settings go back to their defaults rather than keep old values.
        if config.replicas.is_null() {
            planned.replicas = Value::Null;
        }
        if config.deletion_protection.is_null() {
            planned.deletion_protection = Value::Null;
        }
        if let (Value::Value(p), Some(c)) = (&mut planned.addons, config.addons.as_ref_option()) {
            for (pv, cv) in [
                (&mut p.coredns, &c.coredns),
                (&mut p.kube_proxy, &c.kube_proxy),
            ] {
                if cv.is_null() {
                    *pv = Value::Null;
                }
            }
        }
        if let (Value::Value(p), Some(c)) = (&mut planned.audit, config.audit.as_ref_option()) {
            if c.max_age_days.is_null() {
                p.max_age_days = Value::Null;
            }
        }
        if let (Value::Value(p), Some(c)) = (
            &mut planned.authentication,
            config.authentication.as_ref_option(),
        ) {
            if let (Value::Value(pl), Value::Value(cl)) = (&mut p.oidc, &c.oidc) {
                for (po, co) in pl.iter_mut().zip(cl) {
                    if let (Value::Value(po), Value::Value(co)) = (po, co) {
                        if co.username_claim.is_null() {
                            po.username_claim = Value::Null;
                        }
                    }
                }
            }
        }
        if let (Value::Value(p), Some(c)) = (&mut planned.network, config.network.as_ref_option()) {
            for (pv, cv) in [
                (&mut p.service_cidr, &c.service_cidr),
                (&mut p.pod_cidr, &c.pod_cidr),
                (&mut p.dns_service_ip, &c.dns_service_ip),
                (&mut p.service_type, &c.service_type),
            ] {
                if cv.is_null() {
                    *pv = Value::Null;
                }
            }
            if c.port.is_null() {
                p.port = Value::Null;
            }
        }
        planned = planned.with_defaults();
        // Another selector may move the cluster: where to is known after apply.
        if config.datastore.is_null() && planned.datastore_selector != prior.datastore_selector {
            planned.datastore = Value::Unknown;
        }
        let (old_spec, new_spec, unknown) = specs_to_send(&prior, &planned, &config);
        let changes = contract::change(&old_spec, &new_spec);
        let replace = replacements(&prior, &planned, &changes, &unknown);
        let protected = prior.deletion_protection.as_ref_option() == Some(&true);
        if !replace.is_empty() && protected {
            protected_error(diags, &name_of(&prior), "Replacing");
        }
        if replace.is_empty() {
            // What may change in place, as kamajid judges an update.
            for e in changes {
                if judged_now(&e, &unknown) {
                    field_diag(diags, e);
                }
            }
        }
        let rotation =
            |s: &v1::TenantClusterSpec| contract::rotation_state(s.credential_rotation.as_ref());
        let rotating = rotation(&old_spec) != rotation(&new_spec);
        let spec_changed =
            !unknown.is_empty() || old_spec != new_spec || planned.datastore != prior.datastore;
        if !replace.is_empty() {
            planned = planned.unknown_outputs();
            if config.datastore.is_null() {
                planned.datastore = Value::Unknown;
            }
        } else if spec_changed {
            planned = planned.unknown_status();
            if rotating {
                // Re-issued by the rotation: the CA bundle, its hash and the admin's credentials.
                planned.cluster_ca_certificate = Value::Unknown;
                planned.ca_cert_hash = Value::Unknown;
                planned.admin_kubeconfig = Value::Unknown;
                planned.client_certificate = Value::Unknown;
                planned.client_key = Value::Unknown;
            }
            let (p, n) = (
                old_spec.network.clone().unwrap_or_default(),
                new_spec.network.clone().unwrap_or_default(),
            );
            if p.port != n.port
                || p.service_type != n.service_type
                || p.endpoint_address != n.endpoint_address
            {
                planned.endpoint = Value::Unknown;
                planned.admin_kubeconfig = Value::Unknown;
            }
        }
        if !replace.is_empty() {
            if let Value::Value(n) = &planned.name {
                self.own_names.mark(n);
            }
        } else if spec_changed && unknown.is_empty() && diags.errors.is_empty() {
            // What kamajid would refuse (a setting its runtime cannot run) fails the plan.
            if let Some(client) = self.client.get(diags).await {
                let name = name_of(&prior);
                if let Err(s) = client
                    .tenant_clusters()
                    .update_tenant_cluster(v1::UpdateTenantClusterRequest {
                        name: name.clone(),
                        spec: Some(new_spec),
                        validate_only: true,
                    })
                    .await
                {
                    report(
                        diags,
                        &format!("Checking tenant cluster {name:?}"),
                        &client.endpoint,
                        &s,
                    );
                }
            }
        }
        Some((planned, private, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        if prior.deletion_protection.as_ref_option() == Some(&true) {
            protected_error(diags, &name_of(&prior), "Destroying");
        }
        self.leaving.mark(&name_of(&prior));
        Some(private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.client.get(diags).await?;
        let name = name_of(&planned);
        let mut spec_source = planned.clone();
        // An unset datastore lets kamajid choose; the planned value is only "known after apply".
        spec_source.datastore = config.datastore.clone();
        let (spec, _) = spec_source.spec();
        let sent = client
            .tenant_clusters()
            .create_tenant_cluster(v1::CreateTenantClusterRequest {
                name: name.clone(),
                spec: Some(spec),
                validate_only: false,
                planned_datastores: Vec::new(),
            })
            .await;
        let write = Write {
            client: &client,
            name: &name,
            verb: "create",
            planned: &planned,
        };
        let state = Self::settle(diags, write, sent).await?;
        Some((state, private))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        planned: Self::State<'a>,
        config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.client.get(diags).await?;
        let name = name_of(&prior);
        let (old_spec, spec, _) = specs_to_send(&prior, &planned, &config);
        if old_spec == spec {
            // Only timeouts (or nothing kamajid stores) changed.
            let mut state = prior.clone();
            state.timeouts = planned.timeouts.clone();
            return Some((state, private));
        }
        let sent = client
            .tenant_clusters()
            .update_tenant_cluster(v1::UpdateTenantClusterRequest {
                name: name.clone(),
                spec: Some(spec),
                validate_only: false,
            })
            .await;
        let write = Write {
            client: &client,
            name: &name,
            verb: "update",
            planned: &planned,
        };
        let state = Self::settle(diags, write, sent).await?;
        Some((state, private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.client.get(diags).await?;
        let name = name_of(&prior);
        match client
            .tenant_clusters()
            .delete_tenant_cluster(v1::DeleteTenantClusterRequest { name: name.clone() })
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => return Some(()),
            Err(s) => {
                report(
                    diags,
                    &format!("Deleting tenant cluster {name:?}"),
                    &client.endpoint,
                    &s,
                );
                return None;
            }
        }
        let timeout = prior.timeout("delete");
        match Self::wait(&client, &name, timeout, |_| false, None).await {
            Ok(_)
            | Err(WaitEnd::Gone)
            | Err(WaitEnd::Unplaceable(_))
            | Err(WaitEnd::DoesNotStart(_)) => Some(()),
            Err(WaitEnd::TimedOut(last, unreachable)) => {
                let why = last.as_deref().map(status_message).unwrap_or_default();
                let why = match unreachable {
                    Some(u) if why.is_empty() => u.to_string(),
                    Some(u) => format!("{why}; {u}"),
                    None => why,
                };
                diags.root_error(
                    format!("Tenant cluster {name:?} was not removed in time"),
                    format!(
                        "kamajid is still tearing it down after {}s{}. It keeps going; run destroy again later \
                         or raise timeouts.delete.",
                        timeout.as_secs(),
                        if why.is_empty() { String::new() } else { format!(" ({why})") },
                    ),
                );
                None
            }
            Err(WaitEnd::Failed(s)) => {
                report(
                    diags,
                    &format!("Waiting for tenant cluster {name:?} to go"),
                    &client.endpoint,
                    &s,
                );
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        if let Err(e) = validate::dns_label("name", &id) {
            diags.root_error(
                "Invalid import ID",
                format!("the import ID is the tenant cluster name: {}", e.message),
            );
            return None;
        }
        let client = self.client.get(diags).await?;
        match self.get(diags, &client, &id).await? {
            Some(tc) => {
                let creds = Self::credentials(&client, &id).await;
                let mut state =
                    TenantClusterState::from_proto(&tc, creds.as_ref(), &Default::default());
                state.timeouts = Value::Value(Default::default());
                Some((state, Default::default()))
            }
            None => {
                diags.root_error(
                    "Cannot import tenant cluster",
                    format!("kamajid has no tenant cluster named {id:?}."),
                );
                None
            }
        }
    }
}
