//! The `Resource` implementation: Terraform's verbs over the pieces beside it.

use async_trait::async_trait;
use kamaji_proto::tenant as contract;
use kamaji_proto::v1;
use kamaji_proto::validate;
use tf_provider::schema::Schema;
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};
use tonic::Code;

use super::plan::*;
use super::report::{field_diag, status_message};
use super::schema::schema;
use super::state::TenantClusterState;
use super::wait::*;
use super::TenantClusterResource;
use crate::client::report;
use crate::plan_memo::already_exists;

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
        let listed = self
            .listing
            .lookup(&name, std::time::Instant::now(), || async {
                let mut c = client.tenant_clusters();
                crate::client::list_tenant_clusters(&mut c, Default::default()).await
            })
            .await;
        let found = match listed {
            Some(tc) => Some(Some(tc)),
            None => self.get(diags, &client, &name).await,
        };
        match found {
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
                    .map(|t| crate::tenant_cluster::rfc3339(t.seconds));
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
                        super::report::attribute_path("credential_rotation.generation"),
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
        let Update {
            mut planned,
            replace,
            refused,
            old_spec,
            new_spec,
            unknown,
        } = update(&prior, proposed, &config);
        let protected = prior.deletion_protection.as_ref_option() == Some(&true);
        if !replace.is_empty() && protected {
            protected_error(diags, &name_of(&prior), "Replacing");
        }
        for e in refused {
            field_diag(diags, e);
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
            if old_spec.public_issuer != new_spec.public_issuer {
                planned.service_account_issuer = Value::Unknown;
            }
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
        self.listing.written().await;
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
        self.listing.written().await;
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
        self.listing.written().await;
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
