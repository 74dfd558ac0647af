//! The schema of `kamaji_datastore` (the data source's is derived from it).

use tf_provider::schema::{Block, Description, Schema};

use crate::schema::docs::*;
use crate::schema::*;

pub fn schema() -> Schema {
    Schema {
        version: 1,
        block: Block {
            version: 1,
            description: Description::markdown(
                "An etcd cluster registered with kamajid as a home for tenant clusters' state. kamajid checks, before \
                 registering it, that it answers, requires client certificates, has auth enabled and accepts \
                 `client_certificate` as root; then keeps its status current.",
            ),
            attributes: attributes([
                ("id", computed(string(), "The datastore name.")),
                ("name", required(string(), DS_NAME)),
                ("endpoints", required(list_of_strings(), DS_ENDPOINTS)),
                ("ca_certificate", required(string(), DS_CA)),
                ("client_certificate", required(string(), DS_CLIENT_CERT)),
                ("client_key", sensitive(required(string(), DS_CLIENT_KEY))),
                ("client_ca_certificate", required(string(), DS_CLIENT_CA)),
                ("client_ca_key", sensitive(required(string(), DS_CLIENT_CA_KEY))),
                ("quota_bytes", optional_default(number(), DS_QUOTA)),
                ("max_tenants", optional(number(), DS_MAX_TENANTS)),
                ("labels", optional(map_of_strings(), DS_LABELS)),
                ("schedulable", optional_default(boolean(), DS_SCHEDULABLE)),
                ("drain", optional_default(boolean(), DS_DRAIN)),
                ("status", computed(string(), DS_STATUS)),
                ("status_message", computed(string(), DS_STATUS_MESSAGE)),
                ("etcd_version", computed(string(), DS_VERSION)),
                ("db_size_bytes", computed(number(), DS_DB_SIZE)),
                ("db_size_in_use_bytes", computed(number(), DS_DB_SIZE_IN_USE)),
                ("compacted_revision", computed(number(), DS_COMPACTED_REVISION)),
                ("last_compaction_time", computed(string(), DS_LAST_COMPACTION)),
                ("last_defragmentation_time", computed(string(), DS_LAST_DEFRAG)),
                ("alarms", computed(list_of_strings(), DS_ALARMS)),
                ("tenant_count", computed(number(), DS_TENANTS)),
                ("storage_used_bytes", computed(number(), DS_STORAGE_USED)),
                ("storage_keys", computed(number(), DS_STORAGE_KEYS)),
                ("members", computed(list_of_strings(), DS_MEMBERS)),
            ]),
            ..Default::default()
        },
    }
}
