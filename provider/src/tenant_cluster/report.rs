//! How a tenant's state and its refusals reach the user: phase names, status messages, and field
//! errors placed on the attribute they name.

use kamaji_proto::errors::FieldError;
use kamaji_proto::v1;
use tf_provider::{AttributePath, Diagnostics};

/// The phase as users read it.
pub fn phase_name(p: i32) -> &'static str {
    match v1::TenantClusterPhase::try_from(p).unwrap_or_default() {
        v1::TenantClusterPhase::Provisioning => "Provisioning",
        v1::TenantClusterPhase::Ready => "Ready",
        v1::TenantClusterPhase::Upgrading => "Upgrading",
        v1::TenantClusterPhase::Deleting => "Deleting",
        v1::TenantClusterPhase::Degraded => "Degraded",
        v1::TenantClusterPhase::Failed => "Failed",
        v1::TenantClusterPhase::Moving => "Moving",
        v1::TenantClusterPhase::Hibernated => "Hibernated",
        v1::TenantClusterPhase::Restoring => "Restoring",
        v1::TenantClusterPhase::Unspecified => "Unknown",
    }
}

/// Why a tenant is not Ready: the messages of its failing conditions.
pub fn status_message(tc: &v1::TenantCluster) -> String {
    let st = tc.status.clone().unwrap_or_default();
    let ready = st.phase == v1::TenantClusterPhase::Ready as i32;
    st.conditions
        .iter()
        .filter(|c| {
            let warns_when_true = WARN_WHEN_TRUE.contains(&c.r#type.as_str());
            let true_ = c.status == v1::ConditionStatus::True as i32;
            // A Ready cluster only has the warnings to report.
            (true_ == warns_when_true) && (!ready || warns_when_true)
        })
        .map(|c| format!("{}: {}", c.r#type, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Conditions that report trouble when true (the others when false); they may hold while the
/// cluster is Ready.
const WARN_WHEN_TRUE: [&str; 2] = ["StorageQuotaExceeded", "WriteBudgetExceeded"];

/// Blocks the API holds as one message but Terraform as a list of at most one.
const SINGLE_LIST_BLOCKS: [&str; 1] = ["audit"];

/// The attribute path a contract field names: `network.port`, `authentication.oidc[1].client_id`.
pub fn attribute_path(field: &str) -> AttributePath {
    let mut path = AttributePath::root();
    for (n, seg) in field.split('.').enumerate() {
        let (name, index) = match seg.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<i64>().ok()),
            None => (seg, None),
        };
        path = path.attribute(name.to_owned());
        if let Some(i) = index {
            path = path.index(i);
        } else if n == 0 && SINGLE_LIST_BLOCKS.contains(&name) && field.contains('.') {
            path = path.index(0);
        }
    }
    path
}

/// A diagnostic for a field error, on the attribute path it names (`network.port`, ...).
pub fn field_diag(diags: &mut Diagnostics, e: FieldError) {
    let path = attribute_path(&e.field);
    diags.error(format!("Invalid {}", e.field), e.message, path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_fields_map_to_the_blocks_terraform_shows() {
        let show = |f: &str| format!("{:?}", attribute_path(f));
        assert_eq!(
            show("authentication.oidc[1].client_id"),
            format!(
                "{:?}",
                AttributePath::new("authentication")
                    .attribute("oidc")
                    .index(1)
                    .attribute("client_id")
            )
        );
        assert_eq!(
            show("audit.preset"),
            format!(
                "{:?}",
                AttributePath::new("audit").index(0).attribute("preset")
            )
        );
        assert_eq!(
            show("network.port"),
            format!("{:?}", AttributePath::new("network").attribute("port"))
        );
    }
}
