//! Resource `kamaji_tenant_restore`: rolls a tenant cluster back to one of its backups, in
//! place, when the resource is created, and waits until the cluster is Ready on the restored
//! objects. It records an operation: changing an argument restores again, and destroying it
//! only forgets it (a restore cannot be undone; take a backup first to go back).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use kamaji_proto::v1;
use kamaji_proto::validate;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};
use tonic::Code;

use crate::client::{report, Shared};
use crate::schema::*;
use crate::tenant_backup_resource::rfc3339;
use crate::tenant_cluster::phase_name;

/// How long an apply waits for the cluster to be Ready on the restored objects.
const WAIT: Duration = Duration::from_secs(20 * 60);

pub struct TenantRestoreResource {
    pub client: Shared,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRestoreState {
    pub id: Value<String>,
    pub tenant_cluster: Value<String>,
    pub backup_id: Value<String>,
    pub requested_at: Value<String>,
    pub released_at: Value<String>,
    pub write_hold_seconds: Value<i64>,
    pub keys: Value<i64>,
}

pub fn schema() -> Schema {
    Schema {
        version: 1,
        block: Block {
            version: 1,
            description: Description::markdown(
                "Rolls a tenant cluster back to a backup, in place, when created: its writes are held, its \
                 control plane stopped, every key it keeps in its shared etcd replaced by the backup's (objects \
                 created since are gone, those deleted since are back, Secrets included), then it starts again \
                 on them with its own endpoint, CA and credentials. No other tenant of the datastore is touched, \
                 and revisions only move forward, so clients' watches relist rather than fail. The cluster's \
                 `status` is `Restoring` meanwhile; the apply returns once it is `Ready`. Changing an argument \
                 restores again; destroying the resource only forgets it.",
            ),
            attributes: attributes([
                ("id", computed(string(), "`<tenant_cluster>/<backup_id>`.")),
                ("tenant_cluster", required(string(), "Name of the tenant cluster to roll back.")),
                (
                    "backup_id",
                    required(string(), "The backup to roll back to (a `kamaji_tenant_backup`'s `id`, or one of `kamaji_tenant_backups`' `ids`): of this cluster's Kubernetes minor or the one before."),
                ),
                ("requested_at", computed(string(), "When kamajid accepted the restore (RFC 3339, UTC).")),
                ("released_at", computed(string(), "When the cluster's writes were released (its control plane then started on the restored objects).")),
                ("write_hold_seconds", computed(number(), "How long the cluster could not write: from the hold to the release.")),
                ("keys", computed(number(), "Keys written back.")),
            ]),
            blocks: Default::default(),
            deprecated: false,
        },
    }
}

fn text(v: &Value<String>) -> String {
    v.as_ref_option().cloned().unwrap_or_default()
}

impl TenantRestoreState {
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
    }

    fn unknown_outputs(mut self) -> Self {
        self.id = Value::Unknown;
        self.requested_at = Value::Unknown;
        self.released_at = Value::Unknown;
        self.write_hold_seconds = Value::Unknown;
        self.keys = Value::Unknown;
        self
    }
}

#[async_trait]
impl Resource for TenantRestoreResource {
    type State<'a> = TenantRestoreState;
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
        let name = text(&state.tenant_cluster);
        match client
            .tenant_clusters()
            .get_tenant_cluster(v1::GetTenantClusterRequest { name: name.clone() })
            .await
        {
            Ok(_) => Some((state, private)),
            // The cluster is gone, and with it what was restored.
            Err(s) if s.code() == Code::NotFound => None,
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

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        config.check(diags);
        Some((proposed.unknown_outputs(), Default::default()))
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
        let mut replace = Vec::new();
        for (name, old, new) in [
            (
                "tenant_cluster",
                &prior.tenant_cluster,
                &proposed.tenant_cluster,
            ),
            ("backup_id", &prior.backup_id, &proposed.backup_id),
        ] {
            if old != new {
                replace.push(AttributePath::new(name));
            }
        }
        let planned = if replace.is_empty() {
            proposed
        } else {
            proposed.unknown_outputs()
        };
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
        let (name, backup) = (text(&planned.tenant_cluster), text(&planned.backup_id));
        let requested = match client
            .tenant_backups()
            .restore_tenant_backup(v1::RestoreTenantBackupRequest {
                tenant_cluster: name.clone(),
                id: backup.clone(),
            })
            .await
        {
            Ok(r) => r.into_inner().requested_time.map_or(0, |t| t.seconds),
            Err(s) => {
                report(
                    diags,
                    &format!("Restoring tenant cluster {name:?} from backup {backup:?}"),
                    &client.endpoint,
                    &s,
                );
                return None;
            }
        };
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < WAIT {
            match client
                .tenant_clusters()
                .get_tenant_cluster(v1::GetTenantClusterRequest { name: name.clone() })
                .await
            {
                Ok(r) => {
                    let tc = r.into_inner();
                    let st = tc.status.clone().unwrap_or_default();
                    last = format!(
                        "{} ({})",
                        phase_name(st.phase),
                        crate::tenant_cluster::status_message(&tc)
                    );
                    let done = st.last_restore.as_ref().filter(|l| {
                        l.requested_time.as_ref().map(|t| t.seconds) == Some(requested)
                    });
                    if let (Some(l), true) =
                        (done, st.phase == v1::TenantClusterPhase::Ready as i32)
                    {
                        let mut s = planned;
                        s.id = Value::Value(format!("{name}/{backup}"));
                        s.requested_at = Value::Value(rfc3339(l.requested_time.as_ref()));
                        s.released_at = Value::Value(rfc3339(l.released_time.as_ref()));
                        s.write_hold_seconds = Value::Value(l.write_hold_seconds);
                        s.keys = Value::Value(l.keys);
                        return Some((s, private));
                    }
                }
                Err(s) if s.code() == Code::Unavailable => {}
                Err(s) => {
                    report(
                        diags,
                        &format!("Reading tenant cluster {name:?}"),
                        &client.endpoint,
                        &s,
                    );
                    return None;
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        diags.root_error(
            "Restore did not finish",
            format!(
                "tenant cluster {name:?} was not Ready on backup {backup:?} within {} minutes; it is {last}. \
                 kamajid goes on with the restore: apply again to wait for it.",
                WAIT.as_secs() / 60
            ),
        );
        None
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
        Some((planned, private))
    }

    async fn destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        // A restore cannot be undone: destroying the resource forgets it.
        Some(())
    }
}
