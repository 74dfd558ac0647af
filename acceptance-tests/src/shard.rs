//! What a datastore etcd holds, read as its root user: what tenants wrote and left.
use std::time::Duration;

use kamajid::etcd::{connect, EtcdTls};

use crate::DevPki;

/// A root client on a datastore etcd whose CA and root certificate are `pki`'s.
pub async fn root(pki: &DevPki, endpoint: &str) -> etcd_client::Client {
    let tls = EtcdTls {
        ca_pem: Some(pki.ca.cert.clone()),
        identity: Some((pki.root.cert.clone(), pki.root.key.clone())),
    };
    connect(&[endpoint.to_owned()], &tls, Duration::from_secs(5))
        .await
        .expect("shard client")
}

/// Users and roles other than root on a shard, and its number of keys: what a destroyed
/// tenant must not leave behind.
pub async fn leftovers(pki: &DevPki, endpoint: &str) -> (Vec<String>, Vec<String>, i64) {
    let mut c = root(pki, endpoint).await;
    let users: Vec<String> = c
        .user_list()
        .await
        .expect("users")
        .users()
        .iter()
        .filter(|u| u.as_str() != "root")
        .cloned()
        .collect();
    let roles: Vec<String> = c
        .role_list()
        .await
        .expect("roles")
        .roles()
        .iter()
        .filter(|r| r.as_str() != "root")
        .cloned()
        .collect();
    let keys = c
        .get(
            "",
            Some(
                etcd_client::GetOptions::new()
                    .with_from_key()
                    .with_count_only(),
            ),
        )
        .await
        .expect("count keys")
        .count();
    (users, roles, keys)
}

/// Every key on a shard, read as root.
pub async fn keys(pki: &DevPki, endpoint: &str) -> Vec<String> {
    let mut c = root(pki, endpoint).await;
    let r = c
        .get(
            "",
            Some(
                etcd_client::GetOptions::new()
                    .with_from_key()
                    .with_keys_only(),
            ),
        )
        .await
        .expect("list keys");
    r.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}
