//! The client of a tenant's own apiserver: applying and removing the bootstrap objects
//! ([`kamaji_core::bootstrap`]) with server-side apply as `kamajid`, and bootstrap tokens.

use kamaji_core::bootstrap::tokens::{token_info, TokenInfo};
use kamaji_core::bootstrap::{TOKEN_PREFIX, TOKEN_SECRET_TYPE};
use kamaji_core::lifecycle::ports::{PortError, TenantObjects};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use time::OffsetDateTime;

use kamaji_core::controlplane::FIELD_MANAGER;

#[derive(Debug, thiserror::Error)]
pub enum TenantApiError {
    #[error("connecting to the tenant apiserver at {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },
    #[error("applying {kind} {name} in the tenant: {detail}")]
    Apply {
        kind: String,
        name: String,
        detail: String,
    },
    #[error("{0}")]
    Call(String),
}

/// A client for the tenant's own apiserver, trusting only the tenant CA.
pub async fn connect(kubeconfig: &str, endpoint: &str) -> Result<kube::Client, TenantApiError> {
    let err = |e: &dyn std::fmt::Display| TenantApiError::Connect {
        endpoint: endpoint.to_owned(),
        detail: e.to_string(),
    };
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).map_err(|e| err(&e))?;
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| err(&e))?;
    cfg.connect_timeout = Some(std::time::Duration::from_secs(5));
    cfg.read_timeout = Some(std::time::Duration::from_secs(15));
    kube::Client::try_from(cfg).map_err(|e| err(&e))
}

/// Plural resource name and scope of each kind bootstrap writes.
fn resource_of(obj: &Value) -> Option<(ApiResource, Option<String>, String)> {
    let api_version = obj["apiVersion"].as_str()?;
    let kind = obj["kind"].as_str()?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "ServiceAccount" => "serviceaccounts",
        "Service" => "services",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Deployment" => "deployments",
        "DaemonSet" => "daemonsets",
        "ValidatingAdmissionPolicy" => "validatingadmissionpolicies",
        "ValidatingAdmissionPolicyBinding" => "validatingadmissionpolicybindings",
        _ => return None,
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Some((
        ApiResource::from_gvk_with_plural(&gvk, plural),
        obj["metadata"]["namespace"].as_str().map(str::to_owned),
        obj["metadata"]["name"].as_str()?.to_owned(),
    ))
}

fn api_for(client: &kube::Client, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// Server-side applies `objects` in order; re-applying unchanged objects changes nothing, and
/// applying over drift restores kamajid's fields.
pub async fn apply(client: &kube::Client, objects: &[Value]) -> Result<(), TenantApiError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for obj in objects {
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let Some((ar, ns, name)) = resource_of(obj) else {
            return Err(TenantApiError::Apply {
                kind,
                name: String::new(),
                detail: "kind not known to bootstrap".into(),
            });
        };
        api_for(client, &ar, ns.as_deref())
            .patch(&name, &params, &Patch::Apply(obj))
            .await
            .map_err(|e| TenantApiError::Apply {
                kind,
                name,
                detail: e.to_string(),
            })?;
    }
    Ok(())
}

/// Deletes `objects` (in reverse order); missing ones are fine.
pub async fn remove(client: &kube::Client, objects: &[Value]) -> Result<(), TenantApiError> {
    for obj in objects.iter().rev() {
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let Some((ar, ns, name)) = resource_of(obj) else {
            continue;
        };
        match api_for(client, &ar, ns.as_deref())
            .delete(&name, &Default::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(TenantApiError::Apply {
                    kind,
                    name,
                    detail: format!("removing: {e}"),
                })
            }
        }
    }
    Ok(())
}

fn secrets_api(client: &kube::Client) -> Api<k8s_openapi::api::core::v1::Secret> {
    Api::namespaced(client.clone(), "kube-system")
}

/// The token `id`, if it exists and has not expired (the controller-manager's token cleaner
/// deletes expired ones, but not at the second).
pub async fn get_token(
    client: &kube::Client,
    id: &str,
    now: OffsetDateTime,
) -> Result<Option<TokenInfo>, TenantApiError> {
    let s = secrets_api(client)
        .get_opt(&format!("{TOKEN_PREFIX}{id}"))
        .await
        .map_err(|e| TenantApiError::Call(format!("reading bootstrap token {id}: {e}")))?;
    Ok(s.as_ref()
        .and_then(token_info)
        .filter(|t| t.expires.is_none_or(|e| e > now)))
}

pub async fn list_tokens(
    client: &kube::Client,
    now: OffsetDateTime,
) -> Result<Vec<TokenInfo>, TenantApiError> {
    let list = secrets_api(client)
        .list(&kube::api::ListParams::default().fields(&format!("type={TOKEN_SECRET_TYPE}")))
        .await
        .map_err(|e| TenantApiError::Call(format!("listing bootstrap tokens: {e}")))?;
    let mut out: Vec<TokenInfo> = list
        .items
        .iter()
        .filter_map(token_info)
        .filter(|t| t.expires.is_none_or(|e| e > now))
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Deletes token `id`; deleting a missing token is not an error.
pub async fn delete_token(client: &kube::Client, id: &str) -> Result<(), TenantApiError> {
    match secrets_api(client)
        .delete(&format!("{TOKEN_PREFIX}{id}"), &Default::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(TenantApiError::Call(format!(
            "deleting bootstrap token {id}: {e}"
        ))),
    }
}

/// `resource` as the encryption configuration names it (`secrets`, `deployments.apps`,
/// `*.apps`): its plural (`*` for every one) and group.
fn resource_and_group(resource: &str) -> (&str, &str) {
    resource.split_once('.').unwrap_or((resource, ""))
}

/// Writes every object of `resource` back unchanged, a page at a time. The apiserver stores an
/// unchanged object again only when it was read with a key (or provider) that is not the one
/// that now writes: exactly the objects a rotation must re-encrypt. An object changed or
/// deleted meanwhile was written (or removed) by that change already.
pub async fn rewrite(client: &kube::Client, resource: &str) -> Result<usize, TenantApiError> {
    use kube::discovery::verbs;
    let (plural, group) = resource_and_group(resource);
    let found = kube::discovery::group(client, group)
        .await
        .map_err(|e| TenantApiError::Call(format!("discovering {resource}: {e}")))?;
    let mut written = 0;
    for (ar, caps) in found.recommended_resources() {
        if (plural != "*" && ar.plural != plural)
            || !caps.supports_operation(verbs::LIST)
            || !caps.supports_operation(verbs::UPDATE)
        {
            continue;
        }
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let mut params = kube::api::ListParams::default().limit(500);
        loop {
            let page = all
                .list(&params)
                .await
                .map_err(|e| TenantApiError::Call(format!("listing {}: {e}", ar.plural)))?;
            for obj in &page.items {
                let name = obj.metadata.name.clone().unwrap_or_default();
                let api = api_for(client, &ar, obj.metadata.namespace.as_deref());
                match api.replace(&name, &Default::default(), obj).await {
                    Ok(_) => written += 1,
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => {
                        return Err(TenantApiError::Call(format!(
                            "writing {} {name} again: {e}",
                            ar.plural
                        )))
                    }
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok(written)
}

/// Whether `r` is a refusal by kamajid's storage policy.
fn refused_by_policy<T>(r: Result<T, kube::Error>) -> Result<bool, TenantApiError> {
    match r {
        Ok(_) => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 403 || s.code == 422 => {
            Ok(s.message.contains(kamaji_core::bootstrap::quota::POLICY))
        }
        Err(e) => Err(TenantApiError::Call(e.to_string())),
    }
}

/// Whether the tenant's apiserver refuses, with kamajid's storage policy, a create of a
/// ConfigMap and an update of the `default` namespace, as its admin (dry runs: nothing is
/// stored, so this works while the tenant's etcd role is read-only).
pub async fn refuses_writes(client: &kube::Client) -> Result<bool, TenantApiError> {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    let create = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    let probe: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kamaji-wall-probe", "namespace": "default"},
    }))
    .map_err(|e| TenantApiError::Call(e.to_string()))?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    if !refused_by_policy(cms.create(&create, &probe).await)? {
        return Ok(false);
    }
    let patch = Patch::Merge(serde_json::json!({
        "metadata": {"annotations": {"kamaji.clastix.io/wall-probe": "1"}},
    }));
    let params = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let ns: Api<Namespace> = Api::all(client.clone());
    refused_by_policy(ns.patch("default", &params, &patch).await)
}

/// The lifecycle's [`TenantObjects`] port over the tenant's own apiserver.
#[derive(Debug, Clone, Copy, Default)]
pub struct KubeTenantObjects;

impl TenantObjects for KubeTenantObjects {
    async fn sync(
        &self,
        endpoint: &str,
        admin_kubeconfig: &str,
        apply_objects: &[Value],
        remove_objects: &[Value],
    ) -> Result<(), PortError> {
        let fail = |e: TenantApiError| PortError {
            op: format!("bootstrapping the tenant at {endpoint}"),
            detail: e.to_string(),
        };
        let client = connect(admin_kubeconfig, endpoint).await.map_err(fail)?;
        apply(&client, apply_objects).await.map_err(fail)?;
        remove(&client, remove_objects).await.map_err(fail)
    }

    async fn refuses_writes(
        &self,
        endpoint: &str,
        admin_kubeconfig: &str,
    ) -> Result<bool, PortError> {
        let fail = |e: TenantApiError| PortError {
            op: format!("checking the storage policy of the tenant at {endpoint}"),
            detail: e.to_string(),
        };
        let client = connect(admin_kubeconfig, endpoint).await.map_err(fail)?;
        refuses_writes(&client).await.map_err(fail)
    }

    async fn rewrite(
        &self,
        endpoint: &str,
        admin_kubeconfig: &str,
        resources: &[String],
    ) -> Result<usize, PortError> {
        let fail = |e: TenantApiError| PortError {
            op: format!("re-encrypting the objects of the tenant at {endpoint}"),
            detail: e.to_string(),
        };
        let client = connect(admin_kubeconfig, endpoint).await.map_err(fail)?;
        let mut written = 0;
        for r in resources {
            written += rewrite(&client, r).await.map_err(fail)?;
        }
        Ok(written)
    }
}

/// A client for tenant `rec`'s apiserver as its admin.
pub async fn admin_client(
    rec: &kamaji_core::tenant::TenantRecord,
    pki: &kamaji_core::pki::TenantPki,
) -> Result<kube::Client, TenantApiError> {
    let endpoint = rec.endpoint.clone().unwrap_or_default();
    let kc = pki.admin_kubeconfig(rec.name.as_str(), &endpoint);
    connect(&kc, &endpoint).await
}
