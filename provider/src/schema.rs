//! Schema building blocks shared by every resource and data source, so each attribute kind is
//! written once.

use std::collections::HashMap;

use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, NestedBlock,
};

pub fn string() -> AttributeType {
    AttributeType::String
}
pub fn number() -> AttributeType {
    AttributeType::Number
}
pub fn boolean() -> AttributeType {
    AttributeType::Bool
}
pub fn list_of_strings() -> AttributeType {
    AttributeType::List(Box::new(AttributeType::String))
}
/// An object of the named fields (a computed attribute read as one value).
pub fn object<const N: usize>(fields: [(&str, AttributeType); N]) -> AttributeType {
    AttributeType::Object(fields.into_iter().map(|(k, t)| (k.to_owned(), t)).collect())
}
pub fn map_of_strings() -> AttributeType {
    AttributeType::Map(Box::new(AttributeType::String))
}

fn attr(attr_type: AttributeType, constraint: AttributeConstraint, description: &str) -> Attribute {
    Attribute {
        attr_type,
        description: Description::markdown(description),
        constraint,
        sensitive: false,
        deprecated: false,
    }
}

pub fn required(t: AttributeType, d: &str) -> Attribute {
    attr(t, AttributeConstraint::Required, d)
}
pub fn optional(t: AttributeType, d: &str) -> Attribute {
    attr(t, AttributeConstraint::Optional, d)
}
/// Optional; the provider fills in a default when unset.
pub fn optional_default(t: AttributeType, d: &str) -> Attribute {
    attr(t, AttributeConstraint::OptionalComputed, d)
}
pub fn computed(t: AttributeType, d: &str) -> Attribute {
    attr(t, AttributeConstraint::Computed, d)
}
pub fn sensitive(mut a: Attribute) -> Attribute {
    a.sensitive = true;
    a
}

/// Builds an attribute map from `(name, attribute)` pairs.
pub fn attributes<const N: usize>(list: [(&str, Attribute); N]) -> HashMap<String, Attribute> {
    list.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Descriptions shared by the datastore resource and data sources.
pub mod docs {
    pub const DS_NAME: &str =
        "Name of the datastore, a DNS-1123 label. Changing it replaces the datastore.";
    pub const DS_ENDPOINTS: &str = "etcd client URLs (`https://host:port`).";
    pub const DS_CA: &str = "PEM CA bundle that signed the etcd servers' certificates.";
    pub const DS_CLIENT_CERT: &str =
        "PEM client certificate kamajid uses to administer etcd; its CN must be a root user.";
    pub const DS_CLIENT_KEY: &str =
        "PEM private key of `client_certificate`. Never returned by kamajid.";
    pub const DS_CLIENT_CA: &str = "PEM CA that etcd trusts for client certificates; kamajid signs each tenant's etcd certificate with it. Changing it replaces the datastore.";
    pub const DS_CLIENT_CA_KEY: &str = "PEM private key of `client_ca_certificate`. Never returned by kamajid. Changing it replaces the datastore.";
    pub const DS_QUOTA: &str = "Bytes of storage tenants may use on this datastore (match etcd's `--quota-backend-bytes`). Defaults to 2 GiB.";
    pub const DS_MAX_TENANTS: &str = "Most tenants placed on this datastore; unset means no bound.";
    pub const DS_LABELS: &str = "Labels, used by tenant clusters' `datastore_selector`.";
    pub const DS_DRAIN: &str = "Move every tenant cluster off this datastore, two at a time, each to a \
datastore with room (as a change of `datastore` does: in place, writes held for seconds), and place no new one \
here; for maintenance or retirement. Clusters whose `datastore` names this one stay. `tenant_count` falls to 0; \
`status_message` says which clusters are left and why. Defaults to false.";
    pub const DS_SCHEDULABLE: &str =
        "Whether new tenants may be placed here. Set to false to cordon. Defaults to true.";
    pub const DS_STATUS: &str =
        "`Ready`, `Unreachable`, `Insecure` (auth or client certificates off, credentials refused, or an etcd \
release with a known auth bypass), `Alarm` (an etcd alarm such as `NOSPACE` is raised: etcd refuses every write \
and the datastore takes no tenant until kamajid has recovered it) or `Unknown`, from kamajid's last probe.";
    pub const DS_STATUS_MESSAGE: &str =
        "Why the datastore is not `Ready`, and while it drains which tenant \
clusters are left and why; empty otherwise.";
    pub const DS_VERSION: &str = "etcd server version.";
    pub const DS_DB_SIZE: &str =
        "Size of etcd's backend database file in bytes (largest member), free pages \
included: what etcd's quota is checked against.";
    pub const DS_DB_SIZE_IN_USE: &str = "Bytes the data takes in that file; the rest is free pages, which \
kamajid returns to the file system by defragmenting a member once they pile up. Placement counts this, not the file.";
    pub const DS_COMPACTED_REVISION: &str = "The revision kamajid last compacted the datastore to: kamajid \
compacts every datastore as etcd's root user, keeping `--compaction-retention-seconds` (5 minutes by default) of \
history for tenants' watches. 0 until the first compaction.";
    pub const DS_LAST_COMPACTION: &str =
        "When kamajid last compacted the datastore (RFC 3339); empty before the first.";
    pub const DS_LAST_DEFRAG: &str =
        "When kamajid last defragmented one of its members (RFC 3339); empty before the first.";
    pub const DS_ALARMS: &str =
        "etcd alarms raised on its members, as `NOSPACE on member <id>`; empty when none.";
    pub const DS_TENANTS: &str = "Number of tenant clusters placed on the datastore.";
    pub const DS_STORAGE_USED: &str =
        "Bytes of keys and values its tenant clusters keep in it now, together, as \
kamajid measures them (each cluster's share is its `storage_used_bytes`). Null until measured.";
    pub const DS_STORAGE_KEYS: &str =
        "Number of keys its tenant clusters keep in it now. Null until measured.";
    pub const DS_MEMBERS: &str = "Names of the etcd cluster members.";
}

/// A `NestingGroup` block: written at most once, never null, so defaults can show inside it.
pub fn group(
    description: &str,
    attributes: HashMap<String, Attribute>,
    blocks: HashMap<String, NestedBlock>,
) -> NestedBlock {
    NestedBlock::Group(Block {
        version: 1,
        attributes,
        blocks,
        description: Description::markdown(description),
        deprecated: false,
    })
}

/// The same block for a data source: every attribute read-only except those in `inputs`, and
/// without the `timeouts` block.
pub fn read_only(block: &Block, inputs: &[&str]) -> Block {
    let mut b = block.clone();
    for (name, a) in b.attributes.iter_mut() {
        a.constraint = if inputs.contains(&name.as_str()) {
            AttributeConstraint::Required
        } else {
            AttributeConstraint::Computed
        };
    }
    b.blocks.remove("timeouts");
    // A data source cannot have Terraform count its blocks: repeated and optional ones become
    // computed lists of objects, which hold the same values.
    let repeated: Vec<String> = b
        .blocks
        .iter()
        .filter(|(_, nb)| matches!(nb, NestedBlock::List(_) | NestedBlock::Optional(_)))
        .map(|(k, _)| k.clone())
        .collect();
    for name in repeated {
        if let Some(NestedBlock::List(inner) | NestedBlock::Optional(inner)) =
            b.blocks.remove(&name)
        {
            let fields = inner
                .attributes
                .iter()
                .map(|(k, a)| (k.clone(), a.attr_type.clone()))
                .collect();
            let a = Attribute {
                attr_type: AttributeType::List(Box::new(AttributeType::Object(fields))),
                description: inner.description.clone(),
                constraint: AttributeConstraint::Computed,
                sensitive: false,
                deprecated: false,
            };
            b.attributes.insert(name, a);
        }
    }
    for nb in b.blocks.values_mut() {
        if let NestedBlock::Group(inner) = nb {
            *inner = read_only(inner, &[]);
        }
    }
    b
}

/// Descriptions shared by the tenant cluster resource and data source.
pub mod tenant_docs {
    pub const TC_DESCRIPTION: &str = "A managed Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler) run by kamajid. \
kamajid places its state on an etcd datastore with room, fences it there with its own etcd user and key prefix, mints its PKI, runs the \
control plane and reports its endpoint and credentials. Apply returns once the cluster answers.";
    pub const TC_NAME: &str =
        "Name, a DNS-1123 label of at most 50 characters. Changing it replaces the cluster.";
    pub const TC_VERSION: &str = "Kubernetes version, e.g. `1.35.2` (1.33 to 1.37). Changes happen in place: patch releases \
forward, or the next minor; skipping a minor or going down is refused at plan. With a `release_channel`, \
the floor: kamajid may run a newer version (`current_version`) without this changing.";
    pub const TC_REPLICAS: &str = "Control-plane replicas, 1 to 9. Defaults to 2.";
    pub const TC_DATASTORE: &str =
        "Datastore to place the cluster on. Unset lets kamajid choose one with room (and matching \
`datastore_selector`); the chosen one is then shown here. Naming another moves the cluster there in place: \
its objects, endpoint, credentials and nodes stay, writes are held for seconds while its keys are copied, and \
`status` reads `Moving` until it runs on the new datastore.";
    pub const TC_SELECTOR: &str = "When `datastore` is unset: only datastores carrying all these labels. A \
selector the cluster's datastore no longer matches moves the cluster in place, as a change of `datastore` does.";
    pub const TC_ADMISSION: &str =
        "Admission plugins to enable in addition to the apiserver's defaults.";
    pub const TC_LABELS: &str =
        "Labels of the cluster in kamajid, used by the `kamaji_tenant_clusters` filter.";
    pub const TC_PROTECTION: &str =
        "When true, destroying or replacing the cluster is refused (at plan). Defaults to false.";
    pub const TC_HIBERNATED: &str =
        "When true, the control plane is stopped (no pods, no processes) and its data, PKI, endpoint, \
         reservation and usage accounting are kept; `status` reads `Hibernated`. Setting it back to \
         false starts the control plane again with the same endpoint and credentials. While hibernated, \
         certificates are still renewed; a key rotation, a credential rotation and a change of datastore \
         are refused until it is woken. Defaults to false.";
    pub const TC_BACKUP_SCHEDULE: &str = "kamajid backs the cluster up on this schedule (one `kamaji_tenant_backup`-like backup each time, labelled `kamaji.clastix.io/scheduled`), on its leader, and deletes scheduled backups beyond the retention. Needs a kamajid with a backup store (`--backup-store`). `last_backup_at`, `last_backup_id`, `last_backup_error` and `next_backup_at` report on it; `kamaji_tenant_backups` lists the backups.";
    pub const TC_LAST_BACKUP_AT: &str =
        "When the backup schedule last ran (RFC 3339, UTC); null before its first run.";
    pub const TC_LAST_BACKUP_ID: &str =
        "The backup the schedule's last run made (empty when it failed).";
    pub const TC_LAST_BACKUP_ERROR: &str =
        "Why the schedule's last run failed; empty when it succeeded.";
    pub const TC_NEXT_BACKUP_AT: &str =
        "When the backup schedule runs next (RFC 3339, UTC); null without a schedule.";
    pub const TC_RESTORE_KEEP_IDENTITY: &str = "With `restore_from`: the new cluster keeps the backed-up cluster's identity (its CA, front-proxy CA and service-account signing key) rather than getting its own. Kubeconfigs and client certificates of the backed-up cluster then work against the new one (at its endpoint), and its kubelets' certificates are trusted once they are pointed at the new address. Service-account tokens name the issuer of the cluster that signed them, so the backed-up cluster's are not accepted; pods get new ones from their projected volumes. Both clusters then trust the same credentials: use it to replace a cluster, not to copy one beside it. Default `false`. Changing it replaces the cluster.";
    pub const TC_RESTORE_FROM: &str = "Create the cluster from this backup (the `id` of a `kamaji_tenant_backup`, or one of `kamaji_tenant_backups`' `ids`) rather than empty: every object the backed-up cluster kept, Secrets included (read with the encryption keys the backup carries), written back before its control plane first starts. The new cluster has its own CA, endpoint and credentials: kubeconfigs, service-account tokens and nodes of the backed-up cluster are not trusted by it (nodes join it anew). The backup must come from Kubernetes of `kubernetes_version`'s minor or the one before; an archive that does not match its digest is refused before anything is created. Changing it replaces the cluster.";
    pub const TC_PUBLIC_ISSUER: &str =
        "When true, kamajid publishes the cluster's service-account issuer: its OpenID Connect discovery \
         document and key set are served, unauthenticated, at `service_account_issuer`, so that a \
         cloud's IAM, Vault or any OIDC library can verify the cluster's service-account tokens \
         (workload identity). Needs a kamajid started with `--service-account-issuer-base-url`. \
         Tokens issued before it was turned on stay valid. Defaults to false.";
    pub const TC_SA_ISSUER: &str =
        "The issuer (`iss`) of the service-account tokens the control plane signs: with `public_issuer`, \
         `<kamajid's --service-account-issuer-base-url>/<uid>`, where `/.well-known/openid-configuration` \
         and `/openid/v1/jwks` are served; else the in-cluster `https://kubernetes.default.svc.<domain>`.";
    pub const TC_UID: &str =
        "Immutable id kamajid gave the cluster; its etcd user and key prefix (`/<uid>/`).";
    pub const TC_ENDPOINT: &str = "URL of the cluster's API server, `https://host:port`.";
    pub const TC_CA: &str = "PEM CA certificate of the cluster.";
    pub const TC_CA_HASH: &str = "`sha256:<hex>` less the prefix: SHA-256 of the CA's public key, as `kubeadm join --discovery-token-ca-cert-hash` expects.";
    pub const TC_KUBECONFIG: &str =
        "kubeconfig with cluster-admin rights (group `system:masters`).";
    pub const TC_CLIENT_CERT: &str = "PEM client certificate of the cluster admin.";
    pub const TC_CLIENT_KEY: &str = "PEM private key of `client_certificate`.";
    pub const TC_CURRENT_VERSION: &str = "Kubernetes version the control plane runs now. With a \
`release_channel`, kamajid may have moved it past `kubernetes_version`, which is then a floor: the \
configuration keeps saying what it says, and a plan stays empty.";
    pub const TC_KONNECTIVITY: &str =
        "The apiserver reaches nodes, pods and services (`kubectl logs`, \
`exec`, `port-forward`, admission webhooks and aggregated APIs served in the cluster) through a \
[Konnectivity](https://kubernetes.io/docs/tasks/extend-kubernetes/setup-konnectivity/) tunnel: a \
konnectivity server runs beside the apiserver and kamajid installs the agent in the cluster \
(DaemonSet `kube-system/konnectivity-agent`, host network), which dials out to it from every node. \
Turn it on when workers sit in networks the control plane cannot reach. Defaults to `false` (an \
existing cluster keeps how it was); changes in place.";
    pub const TC_RELEASE_CHANNEL: &str = "Which versions kamajid upgrades the cluster to by itself, \
inside `maintenance_window` and outside every `maintenance_exclusion`, one cluster of a datastore at \
a time: `none` (default: only what `kubernetes_version` says), `patch` (the newest patch of the \
running minor that kamajid serves) or `stable` (also the next minor, once kamajid serves a patch of \
it from its stable threshold on, `.2` by default). Versions come from the list kamajid's operator \
gives it (`--served-versions`), never from the internet. With a channel, `kubernetes_version` is a \
floor and `current_version` says what runs.";
    pub const TC_MAINTENANCE_WINDOW: &str =
        "When automatic upgrades may start, every week, in UTC. \
Without it they may start at any time.";
    pub const TC_MAINTENANCE_EXCLUSION: &str = "A period in which automatic upgrades (or those to \
another minor) do not start, e.g. a release freeze. Repeat the block for several.";
    pub const TC_LAST_UPGRADE: &str = "The last version change of the control plane, automatic or \
not: `from_version`, `to_version`, `automatic`, `started_at` and `finished_at` (RFC 3339; null \
while it runs). Null before the first one.";
    pub const TC_NEXT_UPGRADE: &str = "The automatic upgrade the release channel has in store: \
`to_version`, `not_before` (the first moment the window and the exclusions allow it; kamajid also \
upgrades one cluster of a datastore at a time) and `waiting_for` (the exclusion holding it back \
now, if one does). Null when there is none.";
    pub const TC_STATUS: &str = "`Provisioning`, `Ready`, `Upgrading`, `Moving` (to another datastore), `Hibernated` (`hibernated = true`: the control plane is stopped), `Degraded`, `Failed` or `Deleting`. A `Ready` cluster whose control plane stops answering (checked every 30 s) turns `Degraded` and returns to `Ready` by itself when it answers again.";
    pub const TC_STATUS_MESSAGE: &str =
        "Why the cluster is not `Ready` (its failing conditions), or `StorageQuotaExceeded: ...` while it keeps more than its storage quota; empty otherwise.";
    pub const TC_REQUIREMENTS: &str = "Requests and limits as Kubernetes quantities.";
    pub const TC_SERVICE_CIDR: &str = "Range for the cluster's Services. Defaults to `10.96.0.0/12`. Changing it replaces the cluster.";
    pub const TC_POD_CIDR: &str = "Range for Pods. Defaults to `10.244.0.0/16`; must not overlap `service_cidr`. Changing it replaces the cluster.";
    pub const TC_DNS_IP: &str = "Cluster DNS address, inside `service_cidr`. Defaults to `10.96.0.10`. Changing it replaces the cluster.";
    pub const TC_PORT: &str = "Port the API server is reached on. Defaults to 6443.";
    pub const TC_SERVICE_TYPE: &str = "How the admin cluster exposes the API server: `LoadBalancer` (default), `NodePort` or `ClusterIP`.";
    pub const TC_ENDPOINT_ADDRESS: &str = "Address workers and users reach the API server by, when it is not the load balancer's \
(e.g. a DNS name in front of a NodePort). It is in the serving certificate. Changes in place: the certificate is re-issued \
and the control plane rolls; workers joined through the old address keep using it, so list that in `extra_sans` until they are \
re-joined.";
    pub const TC_AUTHORIZED_NETWORKS: &str = "Networks (CIDRs) that may reach the API server; unset or empty means any. On Kubernetes \
the Service's `loadBalancerSourceRanges` (with `externalTrafficPolicy: Local`, so the client address is kept) and the \
tenant's NetworkPolicy enforce it; kamajid's own checks still reach the control plane. The process runtime cannot enforce \
it and refuses a cluster that sets it.";
    pub const TC_ENCRYPTION: &str = "Encryption at rest in the shared etcd. Secrets are always encrypted (secretbox: \
XSalsa20-Poly1305 with a random nonce per write), with a per-cluster key kamajid generates and keeps sealed under its key \
encryption key.";
    pub const TC_ENCRYPTION_RESOURCES: &str = "Resources encrypted besides `secrets`, as the API server names them: \
`configmaps`, `deployments.apps`, or `*.apps` for a whole group. Removing one writes its objects back in plain.";
    pub const TC_KEY_ROTATION: &str = "Which key encrypts. Raise it (by one) to rotate: a new key encrypts, kamajid \
writes every encrypted object again with it and then retires the old key, which stays readable until then. Never \
lowered; unset keeps the rotation in effect. Defaults to 0.";
    pub const TC_KEY_ROTATION_IN_EFFECT: &str =
        "The key rotation every encrypted object is written with now; it reaches `encryption.key_rotation` once the rewrite is done.";
    pub const TC_STORAGE_QUOTA: &str = "Bytes the cluster may keep in its datastore (keys and values under its \
prefix), 1 MiB to 8 GiB. Unset: the reservation kamajid sets aside for each tenant (64 MiB unless its operator changed \
it). Past it, the cluster keeps running but its API server refuses new objects and updates (deletes and the control \
plane's own writes still work) with a message naming the quota, and `status_message` says `StorageQuotaExceeded`; \
once it keeps less than 95 % of it, writes are allowed again by themselves. The cluster's own admin cannot take this \
down: kamajid makes the cluster's etcd role read-only the moment the quota is passed, until the refusal is in force \
inside the cluster, and again whenever it is removed. Changes in place.";
    pub const TC_WRITE_BUDGET: &str = "Bytes per second the cluster may write to its datastore, sustained, with a burst \
of 75 seconds of it: every write stays in the datastore's history until kamajid compacts it, so this is what keeps one \
cluster from filling a shared datastore by rewriting objects. 1024 (1 KiB/s) to 1073741824 (1 GiB/s). Unset: its \
reservation written again every 5 minutes (218 KiB/s for 64 MiB; an idle cluster writes about 1 KB/s). Past the burst, \
new objects and updates are refused as past the quota, with `WriteBudgetExceeded` in `status_message`, until half the \
burst has drained. Changes in place.";
    pub const TC_STORAGE_USED: &str = "Bytes of keys and values the cluster keeps in its datastore now, as kamajid \
measures them (the live data: not etcd's history or free pages). Null until measured, shortly after the cluster is placed.";
    pub const TC_STORAGE_WRITE_RATE: &str =
        "Bytes per second the cluster wrote to its datastore over the last minute, \
as kamajid measures them. Null until measured.";
    pub const TC_STORAGE_HISTORY: &str = "Bytes the cluster wrote to its datastore within the history the datastore \
keeps until kamajid compacts it (two compaction retentions, 10 minutes by default): its share of the datastore beyond \
its live data. Null until measured.";
    pub const TC_STORAGE_KEYS: &str =
        "Number of keys the cluster keeps in its datastore now (one per Kubernetes \
object, plus a few the API server keeps). Null until measured.";
    pub const TC_CERTS_EXPIRE: &str = "When the first of the control plane's leaf certificates (serving, client, \
component kubeconfigs, the admin's) expires, RFC 3339. kamajid renews them all before (30 days by default), with the same CA; \
a refresh then reads the new admin credentials.";
    pub const TC_CREDENTIAL_ROTATION: &str = "Rotation of the cluster's CA and service-account signing key, in two \
phases as GKE's credential rotation: raise `generation` with `phase = \"started\"`, apply, move kubeconfigs and nodes to \
the new credentials (the old ones keep working meanwhile), then set `phase = \"completed\"` and apply. Each apply returns \
once the control plane runs the phase; the plan stays empty afterwards.";
    pub const TC_OIDC: &str = "An OpenID Connect issuer whose ID tokens the API server accepts (structured \
authentication configuration: several issuers may be listed). Bind RBAC roles to the mapped users and groups.";
    pub const TC_AUDIT: &str = "The API server's audit log. In the admin cluster each replica writes it to its \
standard output as JSON lines, where the admin cluster's log collection picks it up beside the component logs; the \
process runtime writes `audit.log` in the tenant's directory, rotated, kept `max_age_days`.";
    pub const TC_EXTRA_SANS: &str =
        "More names and addresses for the serving certificate. Changes in place: the certificate is re-issued (same CA, so \
kubeconfigs and joined nodes keep working) and the control plane rolls.";
}

/// Refuses a known value of `field` that is not a DNS-1123 label (a name kamajid could hold).
pub fn check_name(
    diags: &mut tf_provider::Diagnostics,
    field: &'static str,
    v: &tf_provider::value::Value<String>,
) {
    if let tf_provider::value::Value::Value(n) = v {
        if let Err(e) = kamaji_proto::validate::dns_label(field, n) {
            diags.error(
                format!("Invalid {field}"),
                e.message,
                tf_provider::AttributePath::new(field),
            );
        }
    }
}
