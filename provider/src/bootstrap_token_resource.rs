//! Resource `kamaji_bootstrap_token`: a kubeadm node-join token for a tenant cluster, with the
//! `join_command` worker VMs run from cloud-init.
//!
//! - The token lives inside the tenant (a `bootstrap-token-<id>` Secret) and expires on its own;
//!   kamajid keeps no copy, so the secret half is known only from creation and kept in state.
//! - An expired or deleted token reads as gone, so the next plan creates a new one.
//! - Every input forces a new token: tokens are not edited in place, as with kubeadm.

use std::time::Duration;

use async_trait::async_trait;
use kamaji_proto::v1;
use kamaji_proto::validate;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};
use tonic::Code;

use crate::client::{report, Shared};
use crate::duration::parse_duration;
use crate::schema::*;

pub const DEFAULT_TTL: &str = "24h";
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
const DESCRIPTION_MAX: usize = 256;

pub struct BootstrapTokenResource {
    pub client: Shared,
    /// Tenant clusters this plan creates, see [`crate::plan_memo`].
    pub tenants_arriving: crate::plan_memo::NameSet,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapTokenState {
    pub id: Value<String>,
    pub tenant_cluster: Value<String>,
    pub ttl: Value<String>,
    pub description: Value<String>,
    pub token_id: Value<String>,
    pub token: Value<String>,
    pub join_command: Value<String>,
    pub ca_cert_hash: Value<String>,
    pub expires_at: Value<String>,
}

pub fn schema() -> Schema {
    Schema {
        version: 1,
        block: Block {
            version: 1,
            description: Description::markdown(
                "A kubeadm bootstrap token that lets worker nodes join a tenant cluster with `kubeadm join`. \
                 The token expires on its own after `ttl`; an expired or deleted token is planned for re-creation, \
                 and changing any argument creates a new token. Hand `join_command` to worker VMs through \
                 cloud-init (see `examples/modules/tenant-with-workers`).",
            ),
            attributes: attributes([
                ("id", computed(string(), "`<tenant_cluster>/<token_id>`.")),
                (
                    "tenant_cluster",
                    required(string(), "Name of the tenant cluster the token joins nodes to. Changing it creates a new token."),
                ),
                (
                    "ttl",
                    optional_default(
                        string(),
                        "How long the token is valid, as a duration such as `30m`, `24h` or `168h`; from 1 minute to 8760h (a year). Default `24h`. Changing it creates a new token.",
                    ),
                ),
                (
                    "description",
                    optional(string(), "Shown next to the token inside the tenant (`kubeadm token list`); at most 256 characters, one line."),
                ),
                ("token_id", computed(string(), "The public half of the token, `[a-z0-9]{6}`.")),
                (
                    "token",
                    sensitive(computed(string(), "The token, `<token_id>.<secret>`. Known only at creation; kept in state.")),
                ),
                (
                    "join_command",
                    sensitive(computed(
                        string(),
                        "`kubeadm join <endpoint> --token <token> --discovery-token-ca-cert-hash sha256:<hash>`, ready for cloud-init.",
                    )),
                ),
                (
                    "ca_cert_hash",
                    computed(string(), "`sha256:<hex>` of the tenant CA's public key, for `--discovery-token-ca-cert-hash`."),
                ),
                ("expires_at", computed(string(), "When the token expires (RFC 3339, UTC).")),
            ]),
            blocks: Default::default(),
            deprecated: false,
        },
    }
}

fn text(v: &Value<String>) -> String {
    v.as_ref_option().cloned().unwrap_or_default()
}

fn rfc3339(ts: Option<&prost_types::Timestamp>) -> Value<String> {
    ts.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::Value)
}

impl BootstrapTokenState {
    /// Plan-time checks of known values, on the attribute at fault.
    fn check(&self, diags: &mut Diagnostics) {
        if let Value::Value(t) = &self.tenant_cluster {
            if let Err(e) = validate::dns_label("tenant_cluster", t) {
                diags.error(
                    "Invalid tenant_cluster",
                    e.message,
                    AttributePath::new("tenant_cluster"),
                );
            }
        }
        if let Value::Value(t) = &self.ttl {
            match parse_duration(t) {
                Some(d) if (MIN_TTL..=MAX_TTL).contains(&d) => {}
                Some(_) => diags.error(
                    "Invalid ttl",
                    format!("{t:?} is out of range: a token lives from 1m to 8760h (a year)"),
                    AttributePath::new("ttl"),
                ),
                None => diags.error(
                    "Invalid ttl",
                    format!("{t:?} is not a duration; write it like \"30m\", \"24h\", \"1h30m\" or \"1.5h\""),
                    AttributePath::new("ttl"),
                ),
            }
        }
        if let Value::Value(d) = &self.description {
            if d.len() > DESCRIPTION_MAX || d.chars().any(char::is_control) {
                diags.error(
                    "Invalid description",
                    format!("is {} characters long; at most {DESCRIPTION_MAX} on one line, without control characters", d.len()),
                    AttributePath::new("description"),
                );
            }
        }
    }

    fn ttl_seconds(&self) -> i64 {
        let ttl = self.ttl.as_ref_option().map_or(DEFAULT_TTL, String::as_str);
        parse_duration(ttl).map_or(0, |d| d.as_secs() as i64)
    }

    fn unknown_outputs(mut self) -> Self {
        self.id = Value::Unknown;
        self.token_id = Value::Unknown;
        self.token = Value::Unknown;
        self.join_command = Value::Unknown;
        self.ca_cert_hash = Value::Unknown;
        self.expires_at = Value::Unknown;
        self
    }
}

#[async_trait]
impl Resource for BootstrapTokenResource {
    type State<'a> = BootstrapTokenState;
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
        let (tenant, id) = (text(&state.tenant_cluster), text(&state.token_id));
        match crate::client::patiently("GetBootstrapToken", || {
            let mut c = client.bootstrap_tokens();
            let req = v1::GetBootstrapTokenRequest {
                tenant_cluster: tenant.clone(),
                id: id.clone(),
            };
            async move { c.get_bootstrap_token(req).await }
        })
        .await
        {
            Ok(r) => {
                let t = r.into_inner();
                let mut s = state;
                s.expires_at = rfc3339(t.expire_time.as_ref());
                s.ca_cert_hash = Value::Value(t.ca_cert_hash);
                Some((s, private))
            }
            // Expired, deleted, or its tenant cluster gone: plan a new token.
            Err(s) if s.code() == Code::NotFound => None,
            // The tenant is being replaced or not ready: keep the token as recorded.
            Err(s) if s.code() == Code::FailedPrecondition => Some((state, private)),
            Err(s) => {
                report(
                    diags,
                    &format!("Reading bootstrap token {id:?} of tenant cluster {tenant:?}"),
                    &client.endpoint,
                    &s,
                );
                None
            }
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
        let mut planned = proposed.unknown_outputs();
        if planned.ttl.is_null() {
            planned.ttl = Value::Value(DEFAULT_TTL.into());
        }
        // A token for a cluster that does not exist (and that this plan does not create) is an
        // error now, not at apply.
        if let Value::Value(tenant) = &planned.tenant_cluster {
            if !self.tenants_arriving.contains(tenant) {
                if let Some(client) = self.client.get(diags).await {
                    match client
                        .tenant_clusters()
                        .get_tenant_cluster(v1::GetTenantClusterRequest {
                            name: tenant.clone(),
                        })
                        .await
                    {
                        Ok(_) => {}
                        Err(s) if s.code() == tonic::Code::NotFound => diags.error(
                            "Invalid tenant_cluster",
                            format!(
                                "tenant cluster {tenant:?} does not exist (and this configuration \
                                 does not create it): name an existing cluster, or refer to its \
                                 resource (kamaji_tenant_cluster.<name>.name)"
                            ),
                            AttributePath::new("tenant_cluster"),
                        ),
                        Err(s) => crate::client::report(
                            diags,
                            &format!("Checking tenant cluster {tenant:?}"),
                            &client.endpoint,
                            &s,
                        ),
                    }
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
        if config.ttl.is_null() {
            planned.ttl = Value::Value(DEFAULT_TTL.into());
        }
        let mut replace = Vec::new();
        for (name, old, new) in [
            (
                "tenant_cluster",
                &prior.tenant_cluster,
                &planned.tenant_cluster,
            ),
            ("ttl", &prior.ttl, &planned.ttl),
            ("description", &prior.description, &planned.description),
        ] {
            if old != new {
                replace.push(AttributePath::new(name));
            }
        }
        if !replace.is_empty() {
            planned = planned.unknown_outputs();
        }
        Some((planned, private, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.client.get(diags).await?;
        let tenant = text(&planned.tenant_cluster);
        let t = match client
            .bootstrap_tokens()
            .create_bootstrap_token(v1::CreateBootstrapTokenRequest {
                tenant_cluster: tenant.clone(),
                ttl_seconds: planned.ttl_seconds(),
                description: text(&planned.description),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => {
                report(
                    diags,
                    &format!("Creating a bootstrap token for tenant cluster {tenant:?}"),
                    &client.endpoint,
                    &s,
                );
                return None;
            }
        };
        let mut s = planned;
        s.id = Value::Value(format!("{tenant}/{}", t.id));
        s.token_id = Value::Value(t.id.clone());
        s.token = Value::Value(t.token);
        s.join_command = Value::Value(t.join_command);
        s.ca_cert_hash = Value::Value(t.ca_cert_hash);
        s.expires_at = rfc3339(t.expire_time.as_ref());
        Some((s, private))
    }

    async fn update<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        // Every argument forces replacement, so an update changes nothing kamajid holds.
        Some((planned, private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.client.get(diags).await?;
        let (tenant, id) = (text(&prior.tenant_cluster), text(&prior.token_id));
        match client
            .bootstrap_tokens()
            .delete_bootstrap_token(v1::DeleteBootstrapTokenRequest {
                tenant_cluster: tenant.clone(),
                id: id.clone(),
            })
            .await
        {
            // Gone already, or its tenant cluster is: nothing is left to remove.
            Ok(_) => Some(()),
            Err(s) if matches!(s.code(), Code::NotFound) => Some(()),
            Err(s) => {
                report(
                    diags,
                    &format!("Deleting bootstrap token {id:?} of tenant cluster {tenant:?}"),
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
        _id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        diags.root_error(
            "Bootstrap tokens cannot be imported",
            "Only the creator of a token ever sees its secret half, so an imported token could not provide \
             `token` or `join_command`. Declare a new kamaji_bootstrap_token instead; it expires on its own.",
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(ttl: &str, description: &str) -> BootstrapTokenState {
        BootstrapTokenState {
            tenant_cluster: Value::Value("acme".into()),
            ttl: Value::Value(ttl.into()),
            description: Value::Value(description.into()),
            ..Default::default()
        }
    }

    fn errors(s: &BootstrapTokenState) -> usize {
        let mut d = Diagnostics::default();
        s.check(&mut d);
        d.errors.len()
    }

    #[test]
    fn ttl_and_description_are_checked_at_plan() {
        assert_eq!(errors(&with("24h", "workers")), 0);
        assert_eq!(with("1h30m", "").ttl_seconds(), 5400);
        assert_eq!(errors(&with("30s", "")), 1, "under a minute");
        assert_eq!(errors(&with("9000h", "")), 1, "over a year");
        assert_eq!(errors(&with("tomorrow", "")), 1);
        assert_eq!(errors(&with("24h", "two\nlines")), 1);
        assert_eq!(errors(&with("24h", &"x".repeat(257))), 1);
    }
}
