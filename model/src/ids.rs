//! Typed names, parsed once where they enter (the API edge, a stored record) so that nothing
//! further in can confuse a tenant's name with its immutable id, or either with a datastore.
//!
//! All three are DNS-1123 labels: they become Kubernetes namespace names (`tenant-<name>`), etcd
//! user and role names and key prefixes (`/<id>/`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Check, FieldError};

/// Why a string is not such a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a DNS-1123 label of at most {max} characters")]
pub struct BadName {
    pub value: String,
    pub max: usize,
}

/// The one DNS-1123 label rule: what Kubernetes accepts as a namespace name, and what kamajid
/// uses in etcd keys, user and role names.
fn label(value: &str, max: usize) -> Result<(), BadName> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(BadName {
            value: value.to_owned(),
            max,
        })
    }
}

/// The longest DNS-1123 label.
pub const MAX_LABEL_LEN: usize = 63;

/// A DNS-1123 label as a user wrote it, judged under `field`.
pub fn dns_label(field: &str, value: &str) -> Check {
    label(value, MAX_LABEL_LEN).map_err(|_| {
        FieldError::new(
            field,
            format!(
                "{value:?} is not a DNS-1123 label: use 1 to 63 lowercase letters, digits or '-', \
                 starting and ending with a letter or digit"
            ),
        )
    })
}

/// A DNS name (dot-separated labels, any case) or an IP address, as a certificate SAN or an
/// endpoint host.
pub fn host(field: &str, v: &str) -> Check {
    if v.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.')
            .all(|l| label(&l.to_ascii_lowercase(), MAX_LABEL_LEN).is_ok());
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{v:?} is neither an IP address nor a DNS name"),
        ))
    }
}

/// A DNS subdomain (dot-separated lowercase labels, at most 253 characters).
pub fn is_subdomain(v: &str) -> bool {
    !v.is_empty() && v.len() <= 253 && v.split('.').all(|l| label(l, MAX_LABEL_LEN).is_ok())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The longest such name.
            pub const MAX_LEN: usize = $max;

            pub fn parse(value: &str) -> Result<Self, BadName> {
                label(value, $max)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = BadName;
            fn try_from(value: String) -> Result<Self, BadName> {
                label(&value, $max)?;
                Ok(Self(value))
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A tenant cluster's name, chosen by its user; also its Terraform import id.
    TenantName,
    50
);
name_type!(
    /// A tenant's immutable id, minted once at creation (`<name>-<5 hex>`): its etcd user, role
    /// and key prefix. A tenant re-created under the same name gets a new id, so nothing of the
    /// old one's data is ever reachable by the new one.
    TenantId,
    63
);
name_type!(
    /// A registered datastore's name.
    DatastoreName,
    63
);

impl TenantId {
    /// A fresh id for tenant `name`.
    pub fn mint(name: &TenantName) -> Self {
        let suffix = hex::encode(rand::random::<[u8; 3]>());
        Self(format!("{name}-{}", &suffix[..5]))
    }
}

impl TenantName {
    /// The admin-cluster namespace the tenant's control plane lives in.
    pub fn namespace(&self) -> String {
        format!("tenant-{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_and_ids_are_minted_from_names() {
        let n = TenantName::parse("acme").unwrap();
        let id = TenantId::mint(&n);
        assert!(
            id.as_str().starts_with("acme-") && id.as_str().len() == 10,
            "{id}"
        );
        assert_ne!(TenantId::mint(&n), id);
        assert!(TenantName::parse("Acme").is_err());
        assert!(TenantName::parse(&"a".repeat(51)).is_err());
        assert!(DatastoreName::parse("-x").is_err());
        assert_eq!(n.namespace(), "tenant-acme");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<TenantId>("\"Not Valid\"").is_err());
    }
}
