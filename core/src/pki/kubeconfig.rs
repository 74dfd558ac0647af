//! Credentials as a kubeconfig.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::Pem;

/// A kubeconfig for `user` with embedded credentials. Its `server` is the URL the holder uses.
pub fn kubeconfig(cluster: &str, server: &str, ca_pem: &str, user: &str, creds: &Pem) -> String {
    let b = |s: &str| B64.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\n\
         contexts:\n- name: {user}@{cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\n\
         current-context: {user}@{cluster}\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b(ca_pem),
        b(&creds.cert),
        b(&creds.key)
    )
}
