//! Schema building blocks shared by every resource and data source, so each attribute kind is
//! written once.

use std::collections::HashMap;

use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType, Description};

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
    pub const DS_SCHEDULABLE: &str =
        "Whether new tenants may be placed here. Set to false to cordon. Defaults to true.";
    pub const DS_STATUS: &str =
        "`Ready`, `Unreachable`, `Insecure` or `Unknown`, from kamajid's last probe.";
    pub const DS_STATUS_MESSAGE: &str = "Why the datastore is not `Ready`; empty when it is.";
    pub const DS_VERSION: &str = "etcd server version.";
    pub const DS_DB_SIZE: &str = "Size of etcd's backend database in bytes (largest member).";
    pub const DS_TENANTS: &str = "Number of tenant clusters placed on the datastore.";
    pub const DS_MEMBERS: &str = "Names of the etcd cluster members.";
}
