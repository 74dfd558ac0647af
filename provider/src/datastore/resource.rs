//! The `Resource` implementation of `kamaji_datastore`.

use async_trait::async_trait;
use kamaji_proto::v1;
use kamaji_proto::validate;
use tf_provider::schema::Schema;
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};
use tonic::Code;

use super::state::*;
use super::{schema, DatastoreResource};
use crate::client::report;
use crate::plan_memo::already_exists;

impl DatastoreResource {
    async fn get(&self, diags: &mut Diagnostics, name: &str) -> Option<Option<v1::Datastore>> {
        let client = self.client.get(diags).await?;
        match crate::client::patiently("GetDatastore", || {
            let mut c = client.datastores();
            let req = v1::GetDatastoreRequest {
                name: name.to_owned(),
            };
            async move { c.get_datastore(req).await }
        })
        .await
        {
            Ok(r) => Some(Some(r.into_inner())),
            Err(s) if s.code() == Code::NotFound => Some(None),
            Err(s) => {
                report(
                    diags,
                    &format!("Reading datastore {name:?}"),
                    &client.endpoint,
                    &s,
                );
                None
            }
        }
    }
}

#[async_trait]
impl Resource for DatastoreResource {
    type State<'a> = DatastoreState;
    type PrivateState<'a> = KeyFingerprints;
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
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let name = state
            .name
            .as_ref_option()
            .or(state.id.as_ref_option())
            .cloned()
            .unwrap_or_default();
        match self.get(diags, &name).await {
            Some(Some(ds)) => {
                // Ours: a tainted one is planned next as a create of this name.
                self.own_names.mark(&name);
                Some((DatastoreState::from_proto(&ds, &state), fingerprints(&ds)))
            }
            // Deleted outside Terraform: report it gone so the plan re-creates it.
            Some(None) => None,
            // The read failed: keep what we had, with the error.
            None => Some((state, Default::default())),
        }
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        // Values from variables and functions are unknown during validation; check them now.
        config.check(diags);
        let mut planned = proposed.with_defaults().unknown_computed();
        planned.id = planned.name.clone();
        if let Some(name) = self.own_names.foreign(&planned.name) {
            // Also surfaces a wrong token or an unreachable kamajid at plan rather than apply.
            if let Some(Some(_)) = self.get(diags, name).await {
                already_exists(diags, "Datastore", name);
            }
        }
        self.arriving.mark(planned.planned_identity());
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
        if planned.labels != prior.labels {
            self.arriving.mark(planned.planned_identity());
        }
        // Unset optional attributes go back to their defaults rather than keep old values.
        if config.quota_bytes.is_null() {
            planned.quota_bytes = Value::Null;
        }
        if config.schedulable.is_null() {
            planned.schedulable = Value::Null;
        }
        if config.drain.is_null() {
            planned.drain = Value::Null;
        }
        planned = planned.with_defaults();
        let mut replace = Vec::new();
        if prior.name != planned.name {
            replace.push(AttributePath::new("name"));
        }
        if prior.client_ca_certificate != planned.client_ca_certificate {
            replace.push(AttributePath::new("client_ca_certificate"));
        }
        if key_changes(
            &prior.client_ca_key,
            &planned.client_ca_key,
            &private.client_ca_key_sha256,
        ) {
            replace.push(AttributePath::new("client_ca_key"));
        }
        let spec_changed = prior.endpoints != planned.endpoints
            || prior.ca_certificate != planned.ca_certificate
            || prior.client_certificate != planned.client_certificate
            || key_changes(
                &prior.client_key,
                &planned.client_key,
                &private.client_key_sha256,
            )
            || prior.quota_bytes != planned.quota_bytes
            || prior.max_tenants != planned.max_tenants
            || prior.labels != planned.labels
            || prior.schedulable != planned.schedulable
            || prior.drain != planned.drain
            || !replace.is_empty();
        if spec_changed {
            planned = planned.unknown_computed();
        }
        if !replace.is_empty() {
            if let Value::Value(n) = &planned.name {
                self.own_names.mark(n);
            }
        }
        Some((planned, private, replace))
    }

    /// Refuses to destroy a datastore that holds tenants this plan does not destroy too: the
    /// apply would fail there, after destroying whatever came before it.
    async fn plan_destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        let (Some(name), Some(client)) = (prior.name.as_ref_option(), self.client.get(diags).await)
        else {
            return Some(private);
        };
        let listed = crate::client::list_tenant_clusters(
            &mut client.tenant_clusters(),
            v1::ListTenantClustersRequest {
                datastore: name.clone(),
                ..Default::default()
            },
        )
        .await;
        match listed {
            Ok(all) => {
                let staying: Vec<String> = all
                    .into_iter()
                    .map(|t| t.name)
                    .filter(|t| !self.tenants_leaving.contains(t))
                    .collect();
                if !staying.is_empty() {
                    diags.root_error(
                        format!("Datastore {name:?} still holds tenant clusters"),
                        format!(
                            "Destroying it would fail: it holds {} tenant cluster(s) this plan does not destroy first: {}. \
                             Destroy or move them first; tenant clusters of this configuration must depend on the \
                             datastore (a reference or depends_on) so that Terraform removes them before it.",
                            staying.len(),
                            staying.join(", ")
                        ),
                    );
                }
            }
            Err(s) => report(
                diags,
                &format!("Checking the tenant clusters on datastore {name:?}"),
                &client.endpoint,
                &s,
            ),
        }
        Some(private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.client.get(diags).await?;
        let name = planned.name.as_ref_option().cloned().unwrap_or_default();
        let req = v1::CreateDatastoreRequest {
            name: name.clone(),
            spec: Some(planned.spec()),
        };
        let result = client.datastores().create_datastore(req).await;
        written(
            diags,
            &client,
            &format!("Registering datastore {name:?}"),
            result,
            &planned,
        )
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.client.get(diags).await?;
        let name = prior.name.as_ref_option().cloned().unwrap_or_default();
        let req = v1::UpdateDatastoreRequest {
            name: name.clone(),
            spec: Some(planned.spec()),
        };
        let result = client.datastores().update_datastore(req).await;
        written(
            diags,
            &client,
            &format!("Updating datastore {name:?}"),
            result,
            &planned,
        )
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.client.get(diags).await?;
        let name = prior.name.as_ref_option().cloned().unwrap_or_default();
        match client
            .datastores()
            .delete_datastore(v1::DeleteDatastoreRequest { name: name.clone() })
            .await
        {
            Ok(_) => Some(()),
            Err(s) if s.code() == Code::NotFound => Some(()),
            Err(s) => {
                report(
                    diags,
                    &format!("Removing datastore {name:?}"),
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
                format!("the import ID is the datastore name: {}", e.message),
            );
            return None;
        }
        match self.get(diags, &id).await? {
            Some(ds) => Some((
                DatastoreState::from_proto(&ds, &DatastoreState::default()),
                fingerprints(&ds),
            )),
            None => {
                diags.root_error(
                    "Cannot import datastore",
                    format!("kamajid has no datastore named {id:?}."),
                );
                None
            }
        }
    }
}
