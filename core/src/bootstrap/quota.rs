//! The storage quota inside a tenant: a ValidatingAdmissionPolicy and its binding, applied while
//! the tenant keeps more than its quota and removed when it no longer does. The apiserver
//! enforces it itself (no webhook server to run or reach).
//!
//! It refuses what would add objects: CREATE of any resource (not subresources, so evictions
//! and token requests pass). It lets through what a tenant needs to recover and to keep
//! running: deletes and updates; the control plane's own writes (controller-manager, scheduler,
//! the apiserver, kube-system's controllers, nodes); the reviews that store nothing
//! (`kubectl auth can-i`, `whoami`); and the objects kamajid itself keeps in the tenant (by their
//! managed-by label), so that putting back one the user deleted does not fail.
//!
//! Not a hard wall: the tenant's cluster-admin can delete the policy (kamajid applies it again at
//! the next resync). What a tenant cannot get around is its datastore's own quota.

use serde_json::{json, Value};

use super::meta;
use crate::controlplane::MANAGED_BY;
use crate::ids::TenantName;

/// Name of the policy and of its binding.
pub const POLICY: &str = "kamaji-storage-quota";

/// What a refused create says.
pub fn message(cluster: &TenantName, quota_bytes: i64) -> String {
    format!(
        "tenant cluster {cluster} keeps more than its storage quota of {quota_bytes} bytes: new \
         objects are refused until objects are deleted (deletes and updates still work), or \
         until storage_quota_bytes is raised"
    )
}

/// The policy and its binding, in apply order.
pub fn objects(cluster: &TenantName, quota_bytes: i64) -> Vec<Value> {
    let exempt = "!(request.userInfo.username in ['system:kube-controller-manager', \
                  'system:kube-scheduler', 'system:apiserver'] \
                  || request.userInfo.username.startsWith('system:serviceaccount:kube-system:') \
                  || (has(request.userInfo.groups) && 'system:nodes' in request.userInfo.groups))";
    let stored = "!(request.resource.group in ['authentication.k8s.io', 'authorization.k8s.io'])";
    let (label, owner) = MANAGED_BY;
    let kamajids = format!(
        "!(has(object.metadata.labels) && '{label}' in object.metadata.labels \
         && object.metadata.labels['{label}'] == '{owner}')"
    );
    vec![
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": meta(POLICY, None),
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": ["*"], "apiVersions": ["*"],
                    "operations": ["CREATE"], "resources": ["*"],
                }]},
                "matchConditions": [
                    {"name": "not-the-control-plane", "expression": exempt},
                    {"name": "stored-objects", "expression": stored},
                    {"name": "not-kamajids-own", "expression": kamajids},
                ],
                "validations": [{
                    "expression": "false",
                    "message": message(cluster, quota_bytes),
                    "reason": "Forbidden",
                }],
            },
        }),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": meta(POLICY, None),
            "spec": {"policyName": POLICY, "validationActions": ["Deny"]},
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_refuses_creates_only_and_names_the_quota() {
        let name = TenantName::parse("acme").unwrap();
        let objs = objects(&name, 5 << 20);
        assert_eq!(objs.len(), 2);
        let spec = &objs[0]["spec"];
        assert_eq!(
            spec["matchConstraints"]["resourceRules"][0]["operations"],
            json!(["CREATE"])
        );
        let msg = spec["validations"][0]["message"].as_str().unwrap();
        assert!(
            msg.contains("acme") && msg.contains("5242880 bytes"),
            "{msg}"
        );
        assert_eq!(objs[1]["spec"]["policyName"], POLICY);
        assert_eq!(objs[1]["spec"]["validationActions"], json!(["Deny"]));
    }
}
