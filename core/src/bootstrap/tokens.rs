//! kubeadm node-join tokens: `kube-system/bootstrap-token-<id>` Secrets exactly as kubeadm
//! writes them, read back without their secret half, and the join command.

use rand::Rng;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{host_port, meta, NODE_TOKEN_GROUP, TOKEN_PREFIX, TOKEN_SECRET_TYPE};

/// A new kubeadm token `<id>.<secret>`: `[a-z0-9]{6}` and `[a-z0-9]{16}`.
pub fn new_token() -> (String, String) {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect()
    };
    (pick(6), pick(16))
}

/// The Secret kubeadm writes for a node-join token.
pub fn token_secret(id: &str, secret: &str, expires: OffsetDateTime, description: &str) -> Value {
    let mut data = json!({
        "token-id": id,
        "token-secret": secret,
        "expiration": rfc3339(expires),
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": NODE_TOKEN_GROUP,
    });
    if !description.is_empty() {
        data["description"] = json!(description);
    }
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": meta(&format!("{TOKEN_PREFIX}{id}"), Some("kube-system")),
        "type": TOKEN_SECRET_TYPE,
        "stringData": data,
    })
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// The command a worker runs to join.
pub fn join_command(endpoint: &str, token: &str, ca_cert_hash_hex: &str) -> String {
    format!(
        "kubeadm join {} --token {token} --discovery-token-ca-cert-hash sha256:{ca_cert_hash_hex}",
        host_port(endpoint)
    )
}

/// A token as kamajid reports it; never carries the secret half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub description: String,
    pub expires: Option<OffsetDateTime>,
    pub usages: Vec<String>,
    pub groups: Vec<String>,
}

pub fn token_info(s: &k8s_openapi::api::core::v1::Secret) -> Option<TokenInfo> {
    if s.type_.as_deref() != Some(TOKEN_SECRET_TYPE) {
        return None;
    }
    let data = s.data.clone().unwrap_or_default();
    let mut string_data = s.string_data.clone().unwrap_or_default();
    for (k, v) in data {
        string_data
            .entry(k)
            .or_insert_with(|| String::from_utf8_lossy(&v.0).into_owned());
    }
    let get = |k: &str| string_data.get(k).cloned().unwrap_or_default();
    let id = get("token-id");
    if id.is_empty() {
        return None;
    }
    let mut usages: Vec<String> = string_data
        .iter()
        .filter(|(k, v)| k.starts_with("usage-bootstrap-") && v.as_str() == "true")
        .map(|(k, _)| k.trim_start_matches("usage-bootstrap-").to_owned())
        .collect();
    usages.sort();
    let groups = get("auth-extra-groups")
        .split(',')
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    Some(TokenInfo {
        id,
        description: get("description"),
        expires: parse_rfc3339(&get("expiration")),
        usages,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_secrets_are_what_kubeadm_writes() {
        let (id, secret) = new_token();
        assert!(id.len() == 6 && secret.len() == 16);
        assert!(format!("{id}{secret}")
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_ne!(new_token(), new_token());
        let at = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let s = token_secret("abcdef", "0123456789abcdef", at, "workers of acme");
        assert_eq!(s["metadata"]["name"], "bootstrap-token-abcdef");
        assert_eq!(s["metadata"]["namespace"], "kube-system");
        assert_eq!(s["type"], "bootstrap.kubernetes.io/token");
        let d = &s["stringData"];
        assert_eq!(d["token-id"], "abcdef");
        assert_eq!(d["token-secret"], "0123456789abcdef");
        assert_eq!(d["expiration"], "2030-03-17T17:46:40Z");
        assert_eq!(d["usage-bootstrap-authentication"], "true");
        assert_eq!(d["usage-bootstrap-signing"], "true");
        assert_eq!(d["auth-extra-groups"], NODE_TOKEN_GROUP);
        assert_eq!(d["description"], "workers of acme");
        assert_eq!(parse_rfc3339("2030-03-17T17:46:40Z"), Some(at));

        let typed: k8s_openapi::api::core::v1::Secret = serde_json::from_value(s).unwrap();
        let info = token_info(&typed).unwrap();
        assert_eq!(info.usages, vec!["authentication", "signing"]);
        assert_eq!(info.groups, vec![NODE_TOKEN_GROUP]);
        assert_eq!(info.expires, Some(at));
        assert_eq!(
            join_command("https://203.0.113.10:6443", "abcdef.0123456789abcdef", "ab12"),
            "kubeadm join 203.0.113.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:ab12"
        );
    }
}
