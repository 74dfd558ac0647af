//! The soft wall inside a tenant ([`crate::limits`]): a ValidatingAdmissionPolicy and its
//! binding, applied while the tenant is past its storage quota or write budget and removed when
//! it no longer is. The apiserver enforces it itself (no webhook server to run or reach), with
//! a message naming the limit.
//!
//! It refuses what would add to the tenant's data or history: CREATE and UPDATE of any resource
//! (not subresources, so status updates, scaling, evictions and token requests pass). It lets
//! through what a tenant needs to recover and to keep running: deletes; the control plane's
//! own writes (controller-manager, scheduler, the apiserver, kube-system's controllers, nodes);
//! the reviews that store nothing (`kubectl auth can-i`, `whoami`); and the objects kamajid
//! itself keeps in the tenant (by their managed-by label).
//!
//! Not a wall on its own: the tenant's cluster-admin can delete or change it. kamajid sees that
//! on the shard's watch the moment it happens and raises the hard wall (the tenant's etcd role)
//! until the policy is back and proven in force ([`crate::limits`]).

use serde_json::{json, Value};

use super::meta;
use crate::controlplane::MANAGED_BY;

/// Name of the policy and of its binding.
pub const POLICY: &str = "kamaji-storage-quota";

/// The policy and its binding, in apply order, refusing writes with `message`
/// ([`crate::limits::message`]).
pub fn objects(message: &str) -> Vec<Value> {
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
                    "operations": ["CREATE", "UPDATE"], "resources": ["*"],
                }]},
                "matchConditions": [
                    {"name": "not-the-control-plane", "expression": exempt},
                    {"name": "stored-objects", "expression": stored},
                    {"name": "not-kamajids-own", "expression": kamajids},
                ],
                "validations": [{
                    "expression": "false",
                    "message": message,
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
    fn the_policy_refuses_creates_and_updates_and_says_why() {
        let objs = objects("tenant cluster acme keeps more than its storage quota");
        assert_eq!(objs.len(), 2);
        let spec = &objs[0]["spec"];
        assert_eq!(
            spec["matchConstraints"]["resourceRules"][0]["operations"],
            json!(["CREATE", "UPDATE"])
        );
        let msg = spec["validations"][0]["message"].as_str().unwrap();
        assert!(
            msg.contains("acme") && msg.contains("storage quota"),
            "{msg}"
        );
        assert_eq!(objs[1]["spec"]["policyName"], POLICY);
        assert_eq!(objs[1]["spec"]["validationActions"], json!(["Deny"]));
    }
}
