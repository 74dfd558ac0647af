//! Component flags, computed once from a tenant spec. The Kubernetes runtime turns them into
//! container args, the process runtime into process args; only the file layout differs.
//!
//! Flags follow kubeadm's static pod manifests, plus what a shared etcd needs
//! (`--etcd-prefix=/<id>`, the tenant's etcd client certificate). `extra_args` come last and
//! replace a default of the same name; kamajid's managed flags ([`MANAGED_FLAGS`], the list the
//! input contract refuses them by) are never taken from them.

use std::collections::BTreeMap;

use kamaji_model::flags::MANAGED_FLAGS;

use crate::etcd_keys::apiserver_etcd_prefix;
use crate::ids::{TenantId, TenantName};
use crate::spec::TenantSpec;

/// Where a runtime puts the PKI files and kubeconfigs the components read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub pki_dir: String,
    pub etcd_pki_dir: String,
    pub kubeconfig_dir: String,
    /// The apiserver's configuration files (encryption, authentication, audit policy).
    pub config_dir: String,
    /// Where the audit log goes: `-` (stdout) in a pod, a file on a host.
    pub audit_log: String,
    /// The konnectivity server's Unix socket, which the apiserver dials.
    pub konnectivity_socket: String,
}

impl Layout {
    /// The layout inside control-plane pods (Secrets mounted at these paths).
    /// In a pod the audit log goes to stdout, where the admin cluster's log collection (and
    /// `kubectl logs -c kube-apiserver`) takes it: a pod's files would die with it.
    pub fn pod() -> Self {
        Self {
            pki_dir: "/etc/kubernetes/pki".into(),
            etcd_pki_dir: "/etc/kubernetes/pki/etcd".into(),
            kubeconfig_dir: "/etc/kubernetes/kubeconfig".into(),
            config_dir: "/etc/kubernetes/config".into(),
            audit_log: "-".into(),
            konnectivity_socket: format!(
                "{}/{}",
                super::konnectivity::POD_SOCKET_DIR,
                super::konnectivity::SOCKET_NAME
            ),
        }
    }

    /// The layout of a tenant's working directory on a host.
    pub fn under(dir: &std::path::Path) -> Self {
        Self {
            pki_dir: dir.join("pki").display().to_string(),
            etcd_pki_dir: dir.join("pki/etcd").display().to_string(),
            kubeconfig_dir: dir.display().to_string(),
            config_dir: dir.join("config").display().to_string(),
            audit_log: dir.join("audit.log").display().to_string(),
            // Short: a socket's path has at most 107 bytes, and tenant names up to 63.
            konnectivity_socket: dir.join("knp.sock").display().to_string(),
        }
    }
}

/// Admission plugins enabled when the tenant names none (kubeadm's choice).
pub const DEFAULT_ADMISSION_PLUGINS: &[&str] = &["NodeRestriction"];

/// Where each component serves. In a pod the apiserver takes the tenant's port and the others
/// kubeadm's; on a shared host every tenant needs its own three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ports {
    pub apiserver: u32,
    pub controller_manager: u32,
    pub scheduler: u32,
}

impl Ports {
    pub fn pod(spec: &TenantSpec) -> Self {
        Self {
            apiserver: u32::from(spec.network.port),
            controller_manager: 10257,
            scheduler: 10259,
        }
    }
}

/// What the flags depend on besides the spec.
#[derive(Debug, Clone)]
pub struct FlagInputs<'a> {
    pub tenant_id: &'a TenantId,
    pub etcd_endpoints: &'a [String],
    pub dns_domain: &'a str,
    pub layout: &'a Layout,
    pub ports: Ports,
    /// Address the controller-manager and scheduler serve health on: every interface in a pod
    /// (the kubelet probes the pod IP), loopback on a shared host.
    pub health_bind_address: &'a str,
    /// The IP the apiserver publishes as the endpoint of the tenant's `kubernetes` Service (what
    /// pods on workers reach it at); None lets it pick its host's address, which in a pod is
    /// the pod IP.
    pub advertise_address: Option<std::net::IpAddr>,
    /// Whether the controller-manager and the scheduler elect a leader. Replicated pods must,
    /// and a rolling update runs two at once even at one replica. Without an election they
    /// write no Lease, but also start their controllers before the apiserver answers, and
    /// exit when it does not: both runtimes elect today (see the process runtime).
    pub leader_election: bool,
    /// [`Tenant::issuer_base`](super::Tenant::issuer_base).
    pub issuer_base: Option<&'a str>,
}

/// Leader election of the controller-manager and the scheduler, where they elect one. The
/// leader renews its Lease every retry period, and each renewal is a write to the shared etcd:
/// client-go's defaults (15 s lease, 10 s deadline, 2 s retry) cost every idle tenant a revision
/// a second, the most a shard paid for it. Renewing every 10 s costs a fifth of that. The price:
/// a standby takes over at most lease + jittered retry (30 + 22 s) after a leader that ended
/// without releasing its Lease (the controller-manager never releases it before 1.36's alpha
/// gate), and a component whose first attempt came before the apiserver's RBAC was ready tries
/// again up to 22 s later. Running workloads notice neither; new pods wait that long.
const LEADER_ELECTION: [(&str, &str); 4] = [
    ("leader-elect", "true"),
    ("leader-elect-lease-duration", "30s"),
    ("leader-elect-renew-deadline", "20s"),
    ("leader-elect-retry-period", "10s"),
];

/// No election: the runtime never runs two of a component at once.
const NO_LEADER_ELECTION: [(&str, &str); 1] = [("leader-elect", "false")];

fn leader_election(i: &FlagInputs<'_>) -> Vec<(&'static str, String)> {
    let flags: &[(&'static str, &str)] = if i.leader_election {
        &LEADER_ELECTION
    } else {
        &NO_LEADER_ELECTION
    };
    flags.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// The newest minor whose `APIServerIdentity` gate may still be turned off: beta and on since
/// 1.26, and a locked GA gate would refuse `false` and stop the apiserver, so newer minors keep
/// it until checked. With it, each apiserver renews an identity Lease every 10 s and, from 1.36
/// (`UnknownVersionInteroperabilityProxy`, beta, which needs it), a peer endpoint lease every
/// 10 s: two writes per idle tenant every 10 s, hard-coded. They let apiservers of different
/// versions find each other to proxy requests for APIs only the other serves during a
/// rolling upgrade; a tenant does without it (such a request is answered 404 for the seconds
/// the rollout takes).
const IDENTITY_LEASES_OFF_THROUGH_MINOR: u32 = 37;

/// The feature gates that turn the identity leases off (the proxy first: it needs the
/// identity, and the apiserver refuses a dependent gate left on).
const IDENTITY_LEASES_OFF: &str =
    "APIServerIdentity=false,UnknownVersionInteroperabilityProxy=false";

/// The defaults, then the tenant's extra flags over them, but never over a managed flag: the
/// contract refuses those on every write, and a spec stored before a flag became managed must
/// not override it either.
fn render(defaults: BTreeMap<&str, String>, extra: &BTreeMap<String, String>) -> Vec<String> {
    let mut all: BTreeMap<String, String> = defaults
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (k, v) in extra {
        if !MANAGED_FLAGS.contains(&k.as_str()) {
            all.insert(k.clone(), v.clone());
        }
    }
    all.into_iter().map(|(k, v)| format!("--{k}={v}")).collect()
}

/// kube-apiserver.
pub fn apiserver(spec: &TenantSpec, i: &FlagInputs<'_>) -> Vec<String> {
    let in_cluster = in_cluster_issuer(i.dns_domain);
    let issuer = service_account_issuer(spec, i.tenant_id, i.dns_domain, i.issuer_base);
    let net = &spec.network;
    let port = i.ports.apiserver;
    let pki = &i.layout.pki_dir;
    let etcd = &i.layout.etcd_pki_dir;
    // In addition to the defaults, as the docs say: replacing them would drop NodeRestriction,
    // and a node's credentials could then modify other nodes.
    let mut plugins: Vec<&str> = DEFAULT_ADMISSION_PLUGINS.to_vec();
    for p in &spec.admission_plugins {
        if !plugins.contains(&p.as_str()) {
            plugins.push(p);
        }
    }
    let plugins = plugins.join(",");
    let mut d = BTreeMap::from([
        ("allow-privileged", "true".to_owned()),
        ("authorization-mode", "Node,RBAC".to_owned()),
        ("client-ca-file", format!("{pki}/ca-bundle.crt")),
        ("enable-admission-plugins", plugins),
        ("enable-bootstrap-token-auth", "true".to_owned()),
        ("etcd-cafile", format!("{etcd}/ca.crt")),
        ("etcd-certfile", format!("{etcd}/client.crt")),
        ("etcd-keyfile", format!("{etcd}/client.key")),
        // kamajid compacts the shared etcd as its root user; the apiserver's own compactor works
        // through a key at the root of the keyspace, outside the tenant's role, and would only
        // log a refusal every interval.
        ("etcd-compaction-interval", "0".to_owned()),
        ("etcd-prefix", apiserver_etcd_prefix(i.tenant_id)),
        ("etcd-servers", i.etcd_endpoints.join(",")),
        (
            "kubelet-client-certificate",
            format!("{pki}/apiserver-kubelet-client.crt"),
        ),
        (
            "kubelet-client-key",
            format!("{pki}/apiserver-kubelet-client.key"),
        ),
        (
            "kubelet-preferred-address-types",
            "InternalIP,ExternalIP,Hostname".to_owned(),
        ),
        (
            "proxy-client-cert-file",
            format!("{pki}/front-proxy-client.crt"),
        ),
        (
            "proxy-client-key-file",
            format!("{pki}/front-proxy-client.key"),
        ),
        (
            "requestheader-allowed-names",
            "front-proxy-client".to_owned(),
        ),
        (
            "requestheader-client-ca-file",
            format!("{pki}/front-proxy-ca.crt"),
        ),
        (
            "requestheader-extra-headers-prefix",
            "X-Remote-Extra-".to_owned(),
        ),
        ("requestheader-group-headers", "X-Remote-Group".to_owned()),
        ("requestheader-username-headers", "X-Remote-User".to_owned()),
        ("secure-port", port.to_string()),
        ("service-account-issuer", issuer.clone()),
        ("service-account-key-file", format!("{pki}/sa.pub")),
        ("service-account-signing-key-file", format!("{pki}/sa.key")),
        ("service-cluster-ip-range", net.service_cidr.to_string()),
        ("tls-cert-file", format!("{pki}/apiserver.crt")),
        ("tls-private-key-file", format!("{pki}/apiserver.key")),
    ]);
    if let Some(ip) = i.advertise_address {
        d.insert("advertise-address", ip.to_string());
    }
    if spec.kubernetes_version.minor <= IDENTITY_LEASES_OFF_THROUGH_MINOR {
        d.insert("feature-gates", IDENTITY_LEASES_OFF.into());
    }
    let config = &i.layout.config_dir;
    // Always on: a shared etcd must not hold a tenant's Secrets in the clear.
    d.insert(
        "encryption-provider-config",
        format!("{config}/encryption-config.yaml"),
    );
    d.insert("encryption-provider-config-automatic-reload", "true".into());
    if net.konnectivity {
        d.insert(
            "egress-selector-config-file",
            format!("{config}/{}", super::konnectivity::EGRESS_CONFIG),
        );
    }
    if !spec.oidc.is_empty() {
        d.insert(
            "authentication-config",
            format!("{config}/authentication-config.yaml"),
        );
    }
    if let Some(audit) = &spec.audit {
        d.insert("audit-policy-file", format!("{config}/audit-policy.yaml"));
        d.insert("audit-log-path", i.layout.audit_log.clone());
        d.insert("audit-log-format", "json".into());
        d.insert("audit-log-maxage", audit.max_age_days.to_string());
        d.insert("audit-log-maxbackup", "10".into());
        d.insert("audit-log-maxsize", "100".into());
    }
    let public = issuer != in_cluster;
    if public {
        d.insert(
            "service-account-jwks-uri",
            format!("{issuer}{}", crate::pki::issuer::JWKS_PATH),
        );
        // Tokens bound to the in-cluster issuer before the public one was turned on stay valid.
        d.insert("api-audiences", format!("{issuer},{in_cluster}"));
    }
    let mut args = render(d, &spec.extra_args.apiserver);
    if public {
        // Every issuer given is accepted, the first one signs: again right after it.
        let at = args
            .iter()
            .position(|a| a.starts_with("--service-account-issuer="))
            .map_or(args.len(), |p| p + 1);
        args.insert(at, format!("--service-account-issuer={in_cluster}"));
    }
    args
}

/// The issuer every tenant's service-account tokens had before public issuers: reachable only
/// inside the cluster.
pub fn in_cluster_issuer(dns_domain: &str) -> String {
    format!("https://kubernetes.default.svc.{dns_domain}")
}

/// A tenant's service-account issuer: `<base>/<id>` when its spec asks for a public one and
/// kamajid publishes issuers at `base`, else [`in_cluster_issuer`]. The id, not the name: a
/// cluster created again under the same name must not inherit the trust given to the first.
pub fn service_account_issuer(
    spec: &TenantSpec,
    id: &TenantId,
    dns_domain: &str,
    base: Option<&str>,
) -> String {
    match base {
        Some(b) if spec.public_issuer => format!("{}/{id}", b.trim_end_matches('/')),
        _ => in_cluster_issuer(dns_domain),
    }
}

/// kube-controller-manager, with the bootstrap-token controllers `kubeadm join` relies on.
pub fn controller_manager(
    spec: &TenantSpec,
    tenant_name: &TenantName,
    i: &FlagInputs<'_>,
) -> Vec<String> {
    let net = &spec.network;
    let pki = &i.layout.pki_dir;
    let conf = format!("{}/controller-manager.conf", i.layout.kubeconfig_dir);
    let mut d = BTreeMap::from([
        ("allocate-node-cidrs", "true".to_owned()),
        ("authentication-kubeconfig", conf.clone()),
        ("authorization-kubeconfig", conf.clone()),
        ("bind-address", i.health_bind_address.to_owned()),
        ("client-ca-file", format!("{pki}/ca-bundle.crt")),
        ("cluster-cidr", net.pod_cidr.to_string()),
        ("cluster-name", tenant_name.to_string()),
        ("cluster-signing-cert-file", format!("{pki}/ca.crt")),
        ("cluster-signing-key-file", format!("{pki}/ca.key")),
        ("controllers", "*,bootstrapsigner,tokencleaner".to_owned()),
        ("kubeconfig", conf),
        (
            "requestheader-client-ca-file",
            format!("{pki}/front-proxy-ca.crt"),
        ),
        ("root-ca-file", format!("{pki}/ca-bundle.crt")),
        ("secure-port", i.ports.controller_manager.to_string()),
        ("service-account-private-key-file", format!("{pki}/sa.key")),
        ("service-cluster-ip-range", net.service_cidr.to_string()),
        ("use-service-account-credentials", "true".to_owned()),
    ]);
    d.extend(leader_election(i));
    render(d, &spec.extra_args.controller_manager)
}

/// kube-scheduler.
pub fn scheduler(spec: &TenantSpec, i: &FlagInputs<'_>) -> Vec<String> {
    let conf = format!("{}/scheduler.conf", i.layout.kubeconfig_dir);
    let mut d = BTreeMap::from([
        ("authentication-kubeconfig", conf.clone()),
        ("authorization-kubeconfig", conf.clone()),
        ("bind-address", i.health_bind_address.to_owned()),
        ("kubeconfig", conf),
        ("secure-port", i.ports.scheduler.to_string()),
    ]);
    d.extend(leader_election(i));
    render(d, &spec.extra_args.scheduler)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controlplane::testing;
    use crate::spec::ServiceType;

    fn spec() -> TenantSpec {
        testing::spec(ServiceType::ClusterIp)
    }

    fn id() -> &'static TenantId {
        Box::leak(Box::new(TenantId::parse("acme-x1y2z").unwrap()))
    }

    fn acme() -> TenantName {
        TenantName::parse("acme").unwrap()
    }

    fn inputs<'a>(eps: &'a [String], layout: &'a Layout) -> FlagInputs<'a> {
        FlagInputs {
            tenant_id: id(),
            etcd_endpoints: eps,
            dns_domain: "cluster.local",
            layout,
            ports: Ports::pod(&spec()),
            health_bind_address: "0.0.0.0",
            advertise_address: None,
            leader_election: true,
            issuer_base: None,
        }
    }

    #[test]
    fn a_public_issuer_signs_and_the_in_cluster_one_is_still_accepted() {
        let eps = vec!["https://10.0.0.1:2379".to_owned()];
        let layout = Layout::pod();
        let mut s = spec();
        s.public_issuer = true;
        let mut i = inputs(&eps, &layout);
        let without_base = apiserver(&s, &i);
        assert!(without_base.contains(
            &"--service-account-issuer=https://kubernetes.default.svc.cluster.local".into()
        ));
        i.issuer_base = Some("https://oidc.example.com/");
        let f = apiserver(&s, &i);
        let issuers: Vec<_> = f
            .iter()
            .filter(|a| a.starts_with("--service-account-issuer="))
            .collect();
        assert_eq!(
            issuers,
            [
                "--service-account-issuer=https://oidc.example.com/acme-x1y2z",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            ]
        );
        for want in [
            "--service-account-jwks-uri=https://oidc.example.com/acme-x1y2z/openid/v1/jwks",
            "--api-audiences=https://oidc.example.com/acme-x1y2z,https://kubernetes.default.svc.cluster.local",
        ] {
            assert!(f.iter().any(|x| x == want), "{want} missing from {f:?}");
        }
        s.public_issuer = false;
        assert_eq!(apiserver(&s, &i), without_base, "off: as before");
    }

    #[test]
    fn the_apiserver_is_fenced_into_the_tenant_prefix_of_the_shared_etcd() {
        let eps = vec![
            "https://10.0.0.1:2379".to_owned(),
            "https://10.0.0.2:2379".to_owned(),
        ];
        let layout = Layout::pod();
        let f = apiserver(&spec(), &inputs(&eps, &layout));
        for want in [
            "--etcd-prefix=/acme-x1y2z",
            "--etcd-servers=https://10.0.0.1:2379,https://10.0.0.2:2379",
            "--etcd-certfile=/etc/kubernetes/pki/etcd/client.crt",
            "--secure-port=6443",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--enable-admission-plugins=NodeRestriction",
            "--enable-bootstrap-token-auth=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        ] {
            assert!(f.iter().any(|x| x == want), "{want} missing from {f:?}");
        }
        // Sorted by name and unique: stable args mean no spurious rollouts.
        let names: Vec<&str> = f.iter().map(|a| a.split('=').next().unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, names);
    }

    #[test]
    fn extra_args_replace_defaults_and_add_flags() {
        let mut s = spec();
        s.admission_plugins = vec!["NodeRestriction".into(), "PodSecurity".into()];
        s.extra_args.apiserver = [
            ("audit-log-maxage".into(), "30".into()),
            ("authorization-mode".into(), "Node,RBAC,Webhook".into()),
        ]
        .into();
        s.extra_args.scheduler = [("v".into(), "4".into())].into();
        let eps = vec!["https://e:2379".to_owned()];
        let layout = Layout::pod();
        let f = apiserver(&s, &inputs(&eps, &layout));
        assert!(f.contains(&"--audit-log-maxage=30".to_owned()));
        assert!(f.contains(&"--authorization-mode=Node,RBAC,Webhook".to_owned()));
        assert!(!f.contains(&"--authorization-mode=Node,RBAC".to_owned()));
        assert!(f.contains(&"--enable-admission-plugins=NodeRestriction,PodSecurity".to_owned()));
        assert!(scheduler(&s, &inputs(&eps, &layout)).contains(&"--v=4".to_owned()));
    }

    /// The list the contract refuses `extra_args` by and what the rendering wires in are one:
    /// every flag that points a component at kamajid's files or the shared etcd is managed, and
    /// none can be taken over by a tenant's extra flags.
    #[test]
    fn every_flag_that_wires_a_component_in_is_managed() {
        let eps = vec!["https://e:2379".to_owned()];
        let layout = Layout::under(std::path::Path::new("/var/lib/kamaji/acme"));
        let mut s = spec();
        s.encryption.resources = vec!["configmaps".into()];
        let i = inputs(&eps, &layout);
        let rendered = [
            apiserver(&s, &i),
            controller_manager(&s, &acme(), &i),
            scheduler(&s, &i),
        ]
        .concat();
        let wired: Vec<&str> = rendered
            .iter()
            .filter(|f| f.contains("/var/lib/kamaji/acme") || f.starts_with("--etcd-"))
            .filter_map(|f| f.strip_prefix("--")?.split('=').next())
            .collect();
        assert!(wired.len() > 15, "{wired:?}");
        let unmanaged: Vec<&&str> = wired
            .iter()
            .filter(|f| !MANAGED_FLAGS.contains(f))
            .collect();
        assert!(
            unmanaged.is_empty(),
            "wired in but not managed: {unmanaged:?}"
        );
        for flag in MANAGED_FLAGS {
            s.extra_args.apiserver = [(flag.to_string(), "/tmp/mine".into())].into();
            s.extra_args.controller_manager = s.extra_args.apiserver.clone();
            let f = [apiserver(&s, &i), controller_manager(&s, &acme(), &i)].concat();
            assert!(
                !f.iter().any(|x| x.ends_with("=/tmp/mine")),
                "--{flag} taken over"
            );
        }
    }

    #[test]
    fn the_controller_manager_runs_the_bootstrap_token_controllers_and_layouts_move_paths() {
        let eps = vec!["https://e:2379".to_owned()];
        let layout = Layout::under(std::path::Path::new("/var/lib/kamaji/acme"));
        let f = controller_manager(&spec(), &acme(), &inputs(&eps, &layout));
        assert!(f.contains(&"--controllers=*,bootstrapsigner,tokencleaner".to_owned()));
        assert!(f.contains(&"--cluster-name=acme".to_owned()));
        assert!(f.contains(&"--kubeconfig=/var/lib/kamaji/acme/controller-manager.conf".to_owned()));
        assert!(
            f.contains(&"--cluster-signing-key-file=/var/lib/kamaji/acme/pki/ca.key".to_owned())
        );
    }

    /// What an idle tenant writes to its shard is mostly Lease renewals: leaders renew every
    /// 10 s, a runtime that never runs two of a component elects none, the apiserver keeps no
    /// identity Lease where the gate can be turned off, and a tenant's own flags still win.
    #[test]
    fn idle_components_renew_their_leases_rarely() {
        let eps = vec!["https://e:2379".to_owned()];
        let layout = Layout::pod();
        let mut i = inputs(&eps, &layout);
        for f in [
            controller_manager(&spec(), &acme(), &i),
            scheduler(&spec(), &i),
        ] {
            assert!(f.contains(&"--leader-elect=true".to_owned()), "{f:?}");
            assert!(
                f.contains(&"--leader-elect-retry-period=10s".to_owned()),
                "{f:?}"
            );
            assert!(
                f.contains(&"--leader-elect-lease-duration=30s".to_owned()),
                "{f:?}"
            );
        }
        i.leader_election = false;
        for f in [
            controller_manager(&spec(), &acme(), &i),
            scheduler(&spec(), &i),
        ] {
            assert!(f.contains(&"--leader-elect=false".to_owned()), "{f:?}");
            assert!(!f.iter().any(|f| f.starts_with("--leader-elect-")), "{f:?}");
        }
        let mut s = spec();
        assert!(apiserver(&s, &i).contains(&format!("--feature-gates={IDENTITY_LEASES_OFF}")));
        s.kubernetes_version.minor = IDENTITY_LEASES_OFF_THROUGH_MINOR + 1;
        assert!(!apiserver(&s, &i)
            .iter()
            .any(|f| f.starts_with("--feature-gates")));
        s.extra_args.scheduler = [("leader-elect-retry-period".into(), "2s".into())].into();
        assert!(scheduler(&s, &i).contains(&"--leader-elect-retry-period=2s".to_owned()));
    }

    #[test]
    fn admission_plugins_add_to_the_defaults_never_replace_them() {
        let eps = vec!["https://e:2379".to_owned()];
        let layout = Layout::pod();
        let mut sp = spec();
        sp.admission_plugins = vec!["PodSecurity".into(), "NodeRestriction".into()];
        let a = apiserver(&sp, &inputs(&eps, &layout));
        assert!(
            a.contains(&"--enable-admission-plugins=NodeRestriction,PodSecurity".to_owned()),
            "{a:?}"
        );
        let a = apiserver(&spec(), &inputs(&eps, &layout));
        assert!(
            a.contains(&"--enable-admission-plugins=NodeRestriction".to_owned()),
            "{a:?}"
        );
    }

    /// On a shared host each tenant's components get their own ports and serve health on
    /// loopback only; the same spec gives the same flags otherwise.
    #[test]
    fn host_ports_and_bind_addresses_replace_the_pod_ones() {
        let eps = vec!["https://e:2379".to_owned()];
        let layout = Layout::under(std::path::Path::new("/var/lib/kamajid/tenants/acme"));
        let mut host = inputs(&eps, &layout);
        host.ports = Ports {
            apiserver: 16443,
            controller_manager: 16444,
            scheduler: 16445,
        };
        host.health_bind_address = "127.0.0.1";
        host.advertise_address = Some([203, 0, 113, 7].into());
        let a = apiserver(&spec(), &host);
        assert!(a.contains(&"--secure-port=16443".to_owned()));
        assert!(a.contains(&"--advertise-address=203.0.113.7".to_owned()));
        assert!(!apiserver(&spec(), &inputs(&eps, &Layout::pod()))
            .iter()
            .any(|f| f.starts_with("--advertise-address")));
        assert!(a.contains(
            &"--tls-cert-file=/var/lib/kamajid/tenants/acme/pki/apiserver.crt".to_owned()
        ));
        let cm = controller_manager(&spec(), &acme(), &host);
        assert!(cm.contains(&"--secure-port=16444".to_owned()));
        assert!(cm.contains(&"--bind-address=127.0.0.1".to_owned()));
        let s = scheduler(&spec(), &host);
        assert!(s.contains(&"--secure-port=16445".to_owned()));
        assert!(s.contains(&"--kubeconfig=/var/lib/kamajid/tenants/acme/scheduler.conf".to_owned()));
        let pod = scheduler(&spec(), &inputs(&eps, &Layout::pod()));
        assert!(pod.contains(&"--secure-port=10259".to_owned()));
        assert!(pod.contains(&"--bind-address=0.0.0.0".to_owned()));
    }
}
