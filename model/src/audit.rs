//! Audit logging: the presets and what a policy kube-apiserver loads looks like.

/// Audit presets: what each event records.
pub const AUDIT_PRESETS: [&str; 3] = ["metadata", "request", "request_response"];

/// Why `policy` is not an audit policy kube-apiserver loads: an `audit.k8s.io/v1` `Policy`
/// (YAML or JSON) with at least one rule, each with a level it knows.
pub fn audit_policy(policy: &str) -> Result<(), String> {
    const LEVELS: [&str; 4] = ["None", "Metadata", "Request", "RequestResponse"];
    const STAGES: [&str; 4] = [
        "RequestReceived",
        "ResponseStarted",
        "ResponseComplete",
        "Panic",
    ];
    let doc: serde_json::Value =
        serde_yaml_ng::from_str(policy).map_err(|e| format!("does not parse as YAML: {e}"))?;
    if doc["apiVersion"] != "audit.k8s.io/v1" || doc["kind"] != "Policy" {
        return Err(
            "is not an audit.k8s.io/v1 Policy document (apiVersion: audit.k8s.io/v1, kind: Policy)"
                .into(),
        );
    }
    let rules = doc["rules"]
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or("has no rules: kube-apiserver refuses a policy without one")?;
    for (i, r) in rules.iter().enumerate() {
        let level = r["level"].as_str().unwrap_or_default();
        if !LEVELS.contains(&level) {
            return Err(format!(
                "rules[{i}].level is {:?}; it must be one of {}",
                r["level"],
                LEVELS.join(", ")
            ));
        }
        for stage in r["omitStages"].as_array().into_iter().flatten() {
            if !stage.as_str().is_some_and(|s| STAGES.contains(&s)) {
                return Err(format!(
                    "rules[{i}].omitStages has {stage}; stages are {}",
                    STAGES.join(", ")
                ));
            }
        }
    }
    for stage in doc["omitStages"].as_array().into_iter().flatten() {
        if !stage.as_str().is_some_and(|s| STAGES.contains(&s)) {
            return Err(format!(
                "omitStages has {stage}; stages are {}",
                STAGES.join(", ")
            ));
        }
    }
    Ok(())
}
