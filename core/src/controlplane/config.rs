//! The apiserver's configuration files beyond its flags: encryption at rest, token
//! authenticators (OIDC), and the audit policy. JSON, which is YAML to the apiserver's loader.

use serde_json::{json, Value};

use crate::pki::TenantPki;
use crate::spec::{AuditPolicy, TenantSpec};

/// The encryption configuration of `pki`'s keys: Secrets and the spec's resources with
/// secretbox (XSalsa20 and Poly1305 with a random nonce per write: no per-key write limit,
/// unlike aesgcm; no plugin to run, unlike KMS), the first key encrypting and every key
/// decrypting, `identity` last so objects written before encryption was on still read until
/// they are rewritten. Resources dropped from the spec but maybe still encrypted are written
/// plain (`identity` first) and still read with the keys.
pub fn encryption(spec: &TenantSpec, pki: &TenantPki) -> Value {
    let mut resources = vec!["secrets".to_owned()];
    for r in &spec.encryption.resources {
        if !resources.contains(r) {
            resources.push(r.clone());
        }
    }
    let retiring: Vec<&String> = pki
        .encrypted_resources
        .iter()
        .filter(|r| !resources.contains(r))
        .collect();
    let identity = json!({"identity": {}});
    let mut entries = Vec::new();
    if pki.encryption_keys.is_empty() {
        entries.push(json!({"resources": resources, "providers": [identity]}));
    } else {
        let keys: Vec<Value> = pki
            .encryption_keys
            .iter()
            .map(|k| json!({"name": k.name(), "secret": k.secret}))
            .collect();
        let secretbox = json!({"secretbox": {"keys": keys}});
        entries.push(json!({"resources": resources, "providers": [secretbox, identity]}));
        if !retiring.is_empty() {
            entries.push(json!({"resources": retiring, "providers": [identity, secretbox]}));
        }
    }
    json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": entries,
    })
}

/// The structured authentication configuration of the spec's OIDC issuers, if it has any.
/// `apiserver.config.k8s.io/v1` from Kubernetes 1.34, `v1beta1` before.
pub fn authentication(spec: &TenantSpec) -> Option<Value> {
    if spec.oidc.is_empty() {
        return None;
    }
    let version = if spec.kubernetes_version.minor >= 34 {
        "v1"
    } else {
        "v1beta1"
    };
    let jwt: Vec<Value> = spec
        .oidc
        .iter()
        .map(|o| {
            let mut issuer = json!({"url": o.issuer_url, "audiences": [o.client_id]});
            if let Some(ca) = &o.ca_certificate {
                issuer["certificateAuthority"] = json!(ca);
            }
            let mut mappings = json!({
                "username": {"claim": o.username_claim, "prefix": o.username_prefix},
            });
            if let Some(g) = &o.groups_claim {
                mappings["groups"] = json!({"claim": g, "prefix": o.groups_prefix});
            }
            json!({"issuer": issuer, "claimMappings": mappings})
        })
        .collect();
    Some(json!({
        "apiVersion": format!("apiserver.config.k8s.io/{version}"),
        "kind": "AuthenticationConfiguration",
        "jwt": jwt,
    }))
}

/// The audit policy, if the spec asks for an audit log: a preset's, or the user's own.
pub fn audit_policy(spec: &TenantSpec) -> Option<String> {
    let audit = spec.audit.as_ref()?;
    Some(match &audit.policy {
        AuditPolicy::Custom(policy) => policy.clone(),
        AuditPolicy::Preset(level) => {
            let policy = json!({
                "apiVersion": "audit.k8s.io/v1",
                "kind": "Policy",
                "omitStages": ["RequestReceived"],
                "rules": [
                    // Health checks, every few seconds from every prober: noise.
                    {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/version"]},
                    // What may hold secrets is recorded, never its contents.
                    {"level": "Metadata", "resources": [
                        {"group": "", "resources": ["secrets", "configmaps", "serviceaccounts/token"]},
                        {"group": "authentication.k8s.io", "resources": ["tokenreviews", "tokenrequests"]},
                    ]},
                    {"level": level},
                ],
            });
            serde_json::to_string_pretty(&policy).unwrap_or_default()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controlplane::testing::spec;
    use crate::spec::{Audit, OidcIssuer, ServiceType};

    #[test]
    fn secrets_are_always_encrypted_with_the_newest_key_and_every_key_decrypts() {
        let mut s = spec(ServiceType::ClusterIp);
        s.encryption.resources = vec!["configmaps".into(), "secrets".into()];
        let mut pki = crate::controlplane::testing::pki();
        pki.ensure_encryption_key(1);
        pki.ensure_encryption_key(2);
        let c = encryption(&s, &pki);
        let r = &c["resources"][0];
        assert_eq!(r["resources"], json!(["secrets", "configmaps"]));
        assert_eq!(r["providers"][0]["secretbox"]["keys"][0]["name"], "key-2");
        assert_eq!(r["providers"][0]["secretbox"]["keys"][1]["name"], "key-1");
        assert_eq!(r["providers"][1], json!({"identity": {}}));
        assert_eq!(c["resources"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn a_resource_dropped_from_the_spec_is_written_plain_but_still_read_until_rewritten() {
        let mut s = spec(ServiceType::ClusterIp);
        let mut pki = crate::controlplane::testing::pki();
        pki.ensure_encryption_key(0);
        pki.note_encrypted_resources(&["configmaps".into()]);
        let c = encryption(&s, &pki);
        assert_eq!(c["resources"][0]["resources"], json!(["secrets"]));
        assert_eq!(c["resources"][1]["resources"], json!(["configmaps"]));
        assert_eq!(c["resources"][1]["providers"][0], json!({"identity": {}}));
        assert_eq!(
            c["resources"][1]["providers"][1]["secretbox"]["keys"][0]["name"],
            "key-0"
        );
        // Asked for again: one entry, encrypting.
        s.encryption.resources = vec!["configmaps".into()];
        let c = encryption(&s, &pki);
        assert_eq!(c["resources"].as_array().map(Vec::len), Some(1));
        // Rewritten: gone.
        s.encryption.resources.clear();
        pki.retire_after_rewrite(&[]);
        assert_eq!(
            encryption(&s, &pki)["resources"].as_array().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn issuers_map_to_jwt_authenticators_of_the_tenants_api_version() {
        let mut s = spec(ServiceType::ClusterIp);
        assert!(authentication(&s).is_none());
        s.oidc = vec![OidcIssuer {
            issuer_url: "https://idp.example".into(),
            client_id: "kamaji".into(),
            username_claim: "email".into(),
            username_prefix: "oidc:".into(),
            groups_claim: Some("groups".into()),
            groups_prefix: "oidc:".into(),
            ca_certificate: None,
        }];
        let a = authentication(&s).unwrap();
        assert_eq!(a["apiVersion"], "apiserver.config.k8s.io/v1");
        assert_eq!(a["jwt"][0]["issuer"]["audiences"], json!(["kamaji"]));
        assert_eq!(a["jwt"][0]["claimMappings"]["groups"]["claim"], "groups");
        s.kubernetes_version.minor = 33;
        assert_eq!(
            authentication(&s).unwrap()["apiVersion"],
            "apiserver.config.k8s.io/v1beta1"
        );
    }

    #[test]
    fn presets_never_record_what_secrets_hold() {
        let mut s = spec(ServiceType::ClusterIp);
        assert!(audit_policy(&s).is_none());
        s.audit = Some(Audit {
            policy: AuditPolicy::Preset("RequestResponse"),
            max_age_days: 7,
        });
        let p: Value = serde_json::from_str(&audit_policy(&s).unwrap()).unwrap();
        assert_eq!(p["rules"][1]["level"], "Metadata");
        assert_eq!(p["rules"][2]["level"], "RequestResponse");
    }
}
