//! The changes allowed between two v1 tenant specs, by the model's rules: the one verdict the
//! provider shows at plan and kamajid gives on update.

use kamaji_model::change::{self as rules, IMMUTABLE};

use crate::errors::FieldError;
use crate::v1::TenantClusterSpec;

/// Every refusal of moving a tenant from `old` to `new` in place, one per field. Each rule reads
/// only the fields it judges, and a field that does not parse (judged on its own by
/// [`super::tenant_cluster`]) is not judged here.
pub fn change(old: &TenantClusterSpec, new: &TenantClusterSpec) -> Vec<FieldError> {
    let mut errors: Vec<FieldError> = IMMUTABLE
        .into_iter()
        .filter(|f| fixed(old, f) != fixed(new, f))
        .map(rules::immutable)
        .collect();
    let field = "kubernetes_version";
    if let (Some(from), Some(to)) = (
        super::Version::parse(&old.kubernetes_version),
        super::Version::parse(&new.kubernetes_version),
    ) {
        errors.extend(rules::upgrade(field, from, to).err());
    }
    let rotation = |s: &TenantClusterSpec| s.encryption.as_ref().map_or(0, |e| e.key_rotation);
    errors.extend(
        rules::key_rotation_change("encryption.key_rotation", rotation(old), rotation(new)).err(),
    );
    errors.extend(
        rules::credential_rotation_change(
            super::rotation_state(old.credential_rotation.as_ref()),
            super::rotation_state(new.credential_rotation.as_ref()),
        )
        .err(),
    );
    if new.hibernated {
        let resources = |s: &TenantClusterSpec| {
            let mut r = s
                .encryption
                .as_ref()
                .map(|e| e.resources.clone())
                .unwrap_or_default();
            r.sort();
            r
        };
        let rotation_state =
            |s: &TenantClusterSpec| super::rotation_state(s.credential_rotation.as_ref());
        let changed = [
            rotation(old) != rotation(new),
            resources(old) != resources(new),
            rotation_state(old) != rotation_state(new),
            old.datastore != new.datastore,
        ];
        errors.extend(
            rules::FIXED_WHILE_HIBERNATED
                .into_iter()
                .zip(changed)
                .filter(|(_, c)| *c)
                .map(|(f, _)| rules::fixed_while_hibernated(f)),
        );
    }
    errors
}

/// The value of a field fixed at creation, as written.
fn fixed<'a>(s: &'a TenantClusterSpec, field: &str) -> &'a str {
    if field == "restore_from" {
        return &s.restore_from;
    }
    if field == "restore_keep_identity" {
        return if s.restore_keep_identity { "true" } else { "" };
    }
    let Some(n) = &s.network else { return "" };
    match field {
        "network.service_cidr" => &n.service_cidr,
        "network.pod_cidr" => &n.pod_cidr,
        "network.dns_service_ip" => &n.dns_service_ip,
        _ => "",
    }
}
