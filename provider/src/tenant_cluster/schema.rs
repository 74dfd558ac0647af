//! The schema of `kamaji_tenant_cluster` (the data source's is derived from it).

use tf_provider::schema::{Block, Description, Schema};

use crate::schema::tenant_docs::*;
use crate::schema::*;

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
                ("hibernated", optional_default(boolean(), TC_HIBERNATED)),
                ("public_issuer", optional_default(boolean(), TC_PUBLIC_ISSUER)),
                ("restore_from", optional(string(), TC_RESTORE_FROM)),
                ("restore_keep_identity", optional_default(boolean(), TC_RESTORE_KEEP_IDENTITY)),
                ("release_channel", optional_default(string(), TC_RELEASE_CHANNEL)),
                ("uid", computed(string(), TC_UID)),
                ("endpoint", computed(string(), TC_ENDPOINT)),
                ("cluster_ca_certificate", computed(string(), TC_CA)),
                ("ca_cert_hash", computed(string(), TC_CA_HASH)),
                ("admin_kubeconfig", sensitive(computed(string(), TC_KUBECONFIG))),
                ("client_certificate", computed(string(), TC_CLIENT_CERT)),
                ("client_key", sensitive(computed(string(), TC_CLIENT_KEY))),
                ("current_version", computed(string(), TC_CURRENT_VERSION)),
                ("service_account_issuer", computed(string(), TC_SA_ISSUER)),
                (
                    "last_upgrade",
                    computed(
                        object([
                            ("from_version", string()),
                            ("to_version", string()),
                            ("automatic", boolean()),
                            ("started_at", string()),
                            ("finished_at", string()),
                        ]),
                        TC_LAST_UPGRADE,
                    ),
                ),
                (
                    "next_upgrade",
                    computed(
                        object([
                            ("to_version", string()),
                            ("not_before", string()),
                            ("waiting_for", string()),
                        ]),
                        TC_NEXT_UPGRADE,
                    ),
                ),
                ("last_backup_at", computed(string(), TC_LAST_BACKUP_AT)),
                ("last_backup_id", computed(string(), TC_LAST_BACKUP_ID)),
                ("last_backup_error", computed(string(), TC_LAST_BACKUP_ERROR)),
                ("next_backup_at", computed(string(), TC_NEXT_BACKUP_AT)),
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
                            ("konnectivity", optional_default(boolean(), TC_KONNECTIVITY)),
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
                    "backup_schedule".to_owned(),
                    tf_provider::schema::NestedBlock::Optional(Block {
                        version: 1,
                        description: Description::markdown(TC_BACKUP_SCHEDULE),
                        attributes: attributes([
                            ("interval", required(string(), "Time between two backups, in minutes, hours or days: `\"30m\"`, `\"6h\"`, `\"1d\"`; from 1m to 366d. The first backup is taken as soon as the schedule is set; a failed one is tried again after 5 minutes.")),
                            ("retention_count", optional_default(number(), "Scheduled backups kept, the newest; 1 to 1000, default 7. Backups taken by a `kamaji_tenant_backup` are never deleted by the schedule.")),
                            ("retention_max_age", optional(string(), "Scheduled backups older than this are deleted, whatever the count (the newest always stays), e.g. `\"30d\"`.")),
                        ]),
                        ..Default::default()
                    }),
                ),
                (
                    "maintenance_window".to_owned(),
                    tf_provider::schema::NestedBlock::Optional(Block {
                        version: 1,
                        description: Description::markdown(TC_MAINTENANCE_WINDOW),
                        attributes: attributes([
                            ("start", required(string(), "When the window opens, `HH:MM` in UTC, e.g. `\"02:00\"`.")),
                            ("duration_hours", optional_default(number(), "How long it stays open, 1 to 24 hours; it may run past midnight. Defaults to 4. An upgrade that starts inside the window may finish after it.")),
                            ("days", optional(list_of_strings(), "Days it opens on, `monday` to `sunday`; unset means every day.")),
                        ]),
                        ..Default::default()
                    }),
                ),
                (
                    "maintenance_exclusion".to_owned(),
                    tf_provider::schema::NestedBlock::List(Block {
                        version: 1,
                        description: Description::markdown(TC_MAINTENANCE_EXCLUSION),
                        attributes: attributes([
                            ("name", required(string(), "What it is for; `next_upgrade.waiting_for` names it while it holds an upgrade back.")),
                            ("start", required(string(), "RFC 3339 time it starts, e.g. `2026-11-27T00:00:00Z`.")),
                            ("end", required(string(), "RFC 3339 time it ends; at most 180 days after `start`.")),
                            ("scope", optional_default(string(), "`no_upgrades` (default): no automatic upgrade starts; `no_minor_upgrades`: patches still do, minors wait.")),
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
