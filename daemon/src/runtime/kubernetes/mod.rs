//! The production runtime: each tenant's control plane as objects in the admin cluster,
//! written with server-side apply (field manager `kamajid`, forced: kamajid owns these fields).
//!
//! - apply: the rendered Namespace, Secrets, Deployment, Service, NetworkPolicy and PDB, in that
//!   order; applying an unchanged tenant changes nothing.
//! - status: ready when the Deployment has rolled out its current generation to every desired
//!   replica and they are available (each pod's readiness probe is the apiserver's `/readyz`);
//!   the endpoint comes from the spec's `endpoint_address` when set, else from the Service: a
//!   `NodePort` Service is reached at a Ready node's address on its node port, a `LoadBalancer`
//!   at its load-balancer address (not ready until the cloud gives it one), anything else at
//!   its cluster IP.
//! - delete: deletes the tenant namespace (which takes every object with it) and reports done
//!   once the namespace is gone.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::Resource;
use serde::Serialize;

use kamaji_core::controlplane::{render, Tenant, DEPLOYMENT, FIELD_MANAGER, SERVICE};
use kamaji_core::ids::TenantName;
use kamaji_core::lifecycle::ports::{PortError, Runtime, RuntimeStatus};
use kamaji_core::pki::TenantPki;

mod watch;

pub struct KubeRuntime {
    client: kube::Client,
    /// kamajid's Deployments and Services as watched, for the routine health checks.
    watched: Option<(watch::Watched<Deployment>, watch::Watched<Service>)>,
}

impl KubeRuntime {
    /// A runtime that asks the admin cluster for every status.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            watched: None,
        }
    }

    /// A runtime that also watches its Deployments and Services, so that routine health
    /// checks ask nothing of the admin cluster (needs a Tokio runtime).
    pub fn watching(client: kube::Client) -> Self {
        Self {
            watched: Some((
                // The pod template is most of a Deployment, and no check reads it.
                watch::Watched::start(client.clone(), |d: &mut Deployment| {
                    if let Some(spec) = d.spec.as_mut() {
                        spec.template = Default::default();
                        spec.selector = Default::default();
                    }
                }),
                watch::Watched::start(client.clone(), |_: &mut Service| {}),
            )),
            client,
        }
    }

    fn err(op: &str, tenant: &TenantName, e: impl std::fmt::Display) -> PortError {
        PortError {
            op: format!("{op} tenant {tenant}"),
            detail: e.to_string(),
        }
    }

    async fn apply_one<K>(&self, api: Api<K>, obj: &K, tenant: &TenantName) -> Result<(), PortError>
    where
        K: Resource<DynamicType = ()>
            + Serialize
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(obj))
            .await
            .map_err(|e| Self::err("applying", tenant, format!("{} {name}: {e}", K::kind(&()))))?;
        Ok(())
    }
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Runtime for KubeRuntime {
    async fn apply(&self, t: &Tenant<'_>, pki: &TenantPki) -> Result<(), PortError> {
        let r = render(t, pki);
        let ns = t.name.namespace();
        let c = self.client.clone();
        self.apply_one(Api::<Namespace>::all(c.clone()), &r.namespace, t.name)
            .await?;
        for s in &r.secrets {
            self.apply_one(Api::<Secret>::namespaced(c.clone(), &ns), s, t.name)
                .await?;
        }
        self.apply_one(
            Api::<Deployment>::namespaced(c.clone(), &ns),
            &r.deployment,
            t.name,
        )
        .await?;
        self.apply_one(
            Api::<Service>::namespaced(c.clone(), &ns),
            &r.service,
            t.name,
        )
        .await?;
        self.apply_one(
            Api::<NetworkPolicy>::namespaced(c.clone(), &ns),
            &r.network_policy,
            t.name,
        )
        .await?;
        self.apply_one(
            Api::<PodDisruptionBudget>::namespaced(c, &ns),
            &r.pdb,
            t.name,
        )
        .await?;
        Ok(())
    }

    async fn status(&self, t: &Tenant<'_>) -> Result<RuntimeStatus, PortError> {
        let ns = t.name.namespace();
        let d = Api::<Deployment>::namespaced(self.client.clone(), &ns)
            .get_opt(DEPLOYMENT)
            .await
            .map_err(|e| Self::err("reading the deployment of", t.name, e))?;
        let Some(d) = d else {
            return Ok(RuntimeStatus {
                ready: false,
                endpoint: None,
                message: "control-plane deployment not found".into(),
                stalled: None,
                tunnel: None,
            });
        };
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = d.status.clone().unwrap_or_default();
        let updated = st.updated_replicas.unwrap_or(0);
        let available = st.available_replicas.unwrap_or(0);
        let ready = rolled_out(&d);

        let net = &t.spec.network;
        let tunnel_port =
            u16::try_from(kamaji_core::controlplane::exposure::KONNECTIVITY_PORT).unwrap_or(8132);
        // The host and port clients reach the apiserver at, and the port agents dial there.
        let reached = if let Some(address) = &net.endpoint_address {
            Some((address.clone(), net.port, Some(tunnel_port)))
        } else {
            let svc = Api::<Service>::namespaced(self.client.clone(), &ns)
                .get_opt(SERVICE)
                .await
                .map_err(|e| Self::err("reading the service of", t.name, e))?;
            match svc {
                Some(svc) if node_port(&svc).is_some() => {
                    let nodes = Api::<Node>::all(self.client.clone())
                        .list(&ListParams::default())
                        .await
                        .map_err(|e| Self::err("listing the nodes for", t.name, e))?;
                    let tunnel = tunnel_node_port(&svc);
                    node_address(&nodes.items)
                        .zip(node_port(&svc))
                        .map(|(h, p)| (h, p, tunnel))
                }
                Some(svc) => service_address(svc).map(|h| (h, net.port, Some(tunnel_port))),
                None => None,
            }
        };
        let host_port = |h: &str, port: u16| {
            if h.contains(':') {
                format!("[{h}]:{port}")
            } else {
                format!("{h}:{port}")
            }
        };
        let endpoint = reached
            .as_ref()
            .map(|(h, port, _)| format!("https://{}", host_port(h, *port)));
        let tunnel = reached
            .as_ref()
            .filter(|_| net.konnectivity)
            .and_then(|(h, _, t)| t.map(|t| host_port(h, t)));
        let (message, stalled) = if ready && endpoint.is_none() {
            (
                format!(
                    "waiting for the {} Service's address",
                    t.spec.network.service_type.kubernetes_name()
                ),
                None,
            )
        } else if ready {
            (String::new(), None)
        } else {
            let pods = Api::<Pod>::namespaced(self.client.clone(), &ns)
                .list(&ListParams::default().labels("app.kubernetes.io/component=control-plane"))
                .await
                .map_err(|e| Self::err("listing the control-plane pods of", t.name, e))?;
            (
                format!(
                    "{available}/{want} control-plane replicas available, {updated}/{want} updated"
                ),
                stalled(&pods.items),
            )
        };
        Ok(RuntimeStatus {
            ready: ready && endpoint.is_some(),
            endpoint,
            message,
            stalled,
            tunnel,
        })
    }

    async fn health(&self, t: &Tenant<'_>) -> Result<RuntimeStatus, PortError> {
        if let Some((deployments, services)) = &self.watched {
            let ns = t.name.namespace();
            if let (Some(d), Some(svc)) =
                (deployments.get(&ns, DEPLOYMENT), services.get(&ns, SERVICE))
            {
                let reached = t.spec.network.endpoint_address.is_some()
                    || node_port(&svc).is_some()
                    || service_address((*svc).clone()).is_some();
                if rolled_out(&d) && reached {
                    return Ok(RuntimeStatus {
                        ready: true,
                        ..Default::default()
                    });
                }
            }
        }
        self.status(t).await
    }

    async fn delete(&self, tenant: &TenantName) -> Result<bool, PortError> {
        let api = Api::<Namespace>::all(self.client.clone());
        let ns = tenant.namespace();
        match api.delete(&ns, &DeleteParams::foreground()).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => return Ok(true),
            Err(e) => return Err(Self::err("deleting the namespace of", tenant, e)),
        }
        match api.get_opt(&ns).await {
            Ok(None) => Ok(true),
            Ok(Some(_)) => Ok(false),
            Err(e) => Err(Self::err("reading the namespace of", tenant, e)),
        }
    }
}

/// Whether the Deployment has rolled out its current generation to every desired replica and
/// they are all available.
fn rolled_out(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = d.status.as_ref() else {
        return false;
    };
    st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && st.updated_replicas.unwrap_or(0) >= want
        && st.available_replicas.unwrap_or(0) >= want
        && st.replicas.unwrap_or(0) == want
}

/// The node port of a `NodePort` Service's API port, once allocated.
fn node_port(svc: &Service) -> Option<u16> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() != Some("NodePort") {
        return None;
    }
    let port = spec.ports.as_ref()?.first()?.node_port?;
    u16::try_from(port).ok()
}

/// The node port agents dial on a `NodePort` Service with a Konnectivity port.
fn tunnel_node_port(svc: &Service) -> Option<u16> {
    let port = svc
        .spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.name.as_deref() == Some("konnectivity"))?
        .node_port?;
    u16::try_from(port).ok()
}

/// Where a Service other than a `NodePort` one is reached: a `LoadBalancer` at its load
/// balancer's address, once the cloud gave it one (its cluster IP is no address for users
/// outside), anything else at its cluster IP.
fn service_address(s: Service) -> Option<String> {
    let balanced = s
        .spec
        .as_ref()
        .is_some_and(|sp| sp.type_.as_deref() == Some("LoadBalancer"));
    if balanced {
        let ingress = s
            .status
            .and_then(|st| st.load_balancer)
            .and_then(|lb| lb.ingress)
            .and_then(|i| i.into_iter().next());
        return ingress.and_then(|i| i.ip.or(i.hostname));
    }
    s.spec
        .and_then(|sp| sp.cluster_ip)
        .filter(|ip| ip != "None")
}

/// The address a `NodePort` Service is reached at: of the Ready, schedulable nodes, the first by
/// name (stable while it stays), its external address when it has one, else its internal one.
pub fn node_address(nodes: &[Node]) -> Option<String> {
    let ready = |n: &&Node| {
        let st = n.status.as_ref();
        let is_ready = st
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let cordoned = n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        is_ready && !cordoned
    };
    let mut candidates: Vec<&Node> = nodes.iter().filter(ready).collect();
    candidates.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    candidates.into_iter().find_map(|n| {
        let addrs = n.status.as_ref()?.addresses.as_ref()?;
        let of = |kind: &str| {
            addrs
                .iter()
                .find(|a| a.type_ == kind)
                .map(|a| a.address.clone())
        };
        of("ExternalIP").or_else(|| of("InternalIP"))
    })
}

/// A container restarted this often after failing is not going to start as configured.
const STALLED_RESTARTS: i32 = 3;

/// Why the control plane will not start as configured, from its pods: a container the kubelet
/// keeps restarting (crash loop, or killed for memory), with what it said last (the rendered
/// pods put the tail of its log in its termination message when it fails).
pub fn stalled(pods: &[Pod]) -> Option<String> {
    let mut out = Vec::new();
    for pod in pods {
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        for c in statuses.into_iter().flatten() {
            let last = c.last_state.as_ref().and_then(|l| l.terminated.as_ref());
            let waiting = c
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref());
            if c.restart_count < STALLED_RESTARTS
                || (waiting != Some("CrashLoopBackOff") && last.is_none())
            {
                continue;
            }
            let said = last
                .map(|t| {
                    let reason = t
                        .reason
                        .clone()
                        .unwrap_or_else(|| format!("exit code {}", t.exit_code));
                    match t
                        .message
                        .as_deref()
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                    {
                        Some(m) => format!("{reason}: {}", last_line(m)),
                        None => reason,
                    }
                })
                .unwrap_or_default();
            let entry = format!(
                "{} {} ({} restarts): {said}",
                c.name,
                waiting.unwrap_or("restarting"),
                c.restart_count
            );
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    (!out.is_empty()).then(|| out.join("; "))
}

/// The last error line of a termination message (the tail of the container's log).
fn last_line(m: &str) -> String {
    let lines: Vec<&str> = m.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("Error: ") || l.starts_with('E') || l.starts_with('F'))
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
