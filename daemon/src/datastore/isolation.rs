//! Fencing a tenant into its own key prefix of a shared etcd.
//!
//! Per tenant id: a role with read-write on exactly `["/<id>/", prefix_end("/<id>/"))`, and a
//! password-less user of the same name, granted that role. The tenant's kube-apiserver connects
//! with a client certificate whose CN is the id (signed by the datastore's client CA) and runs
//! with `--etcd-prefix=/<id>`. The trailing '/' is what keeps tenant `team` out of `team-a`.
//!
//! Guarantees: [`ensure`] and [`remove`] are idempotent (etcd answers "already exists" and "not
//! found" for repeats; those are recognised here, in one place) so a reconcile interrupted at
//! any step can run them again. [`remove`] revokes access first (role), then deletes exactly the
//! prefix, then the user: a crash between steps never leaves a user that can still read data.

use etcd_client::{Client, DeleteOptions, Permission, UserAddOptions};

use crate::etcd::{error_chain, prefix_end};

#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    #[error("tenant id {0:?} is not usable as an etcd prefix (a DNS-1123 label is required)")]
    BadId(String),
    #[error("{step} for tenant {id}: {detail}")]
    Etcd {
        step: &'static str,
        id: String,
        detail: String,
    },
}

/// The key prefix of tenant `id`, with the trailing '/' that isolation rests on.
pub fn prefix(id: &str) -> String {
    format!("/{id}/")
}

/// The value of kube-apiserver's `--etcd-prefix` for tenant `id` (it appends '/' itself).
pub fn apiserver_etcd_prefix(id: &str) -> String {
    format!("/{id}")
}

fn check(id: &str) -> Result<(), IsolationError> {
    kamaji_proto::validate::dns_label("id", id).map_err(|_| IsolationError::BadId(id.to_owned()))
}

/// Runs one etcd call, treating an answer containing `benign` (e.g. "already exists") as
/// success; etcd repeats of grants succeed on their own and pass `None`.
async fn step<T>(
    id: &str,
    name: &'static str,
    benign: Option<&str>,
    call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<(), IsolationError> {
    match call.await {
        Ok(_) => Ok(()),
        Err(e) => {
            let detail = error_chain(&e);
            if benign.is_some_and(|b| detail.contains(b)) {
                Ok(())
            } else {
                Err(IsolationError::Etcd {
                    step: name,
                    id: id.to_owned(),
                    detail,
                })
            }
        }
    }
}

/// Creates (or completes) tenant `id`'s role and user.
pub async fn ensure(client: &Client, id: &str) -> Result<(), IsolationError> {
    check(id)?;
    let p = prefix(id);
    let mut c = client.clone();
    step(id, "adding role", Some("already exists"), c.role_add(id)).await?;
    let perm = Permission::read_write(p.as_bytes()).with_range_end(prefix_end(p.as_bytes()));
    step(
        id,
        "granting the prefix",
        None,
        c.role_grant_permission(id, perm),
    )
    .await?;
    step(
        id,
        "adding user",
        Some("already exists"),
        c.user_add(id, "", Some(UserAddOptions::new().with_no_pwd())),
    )
    .await?;
    step(id, "granting the role", None, c.user_grant_role(id, id)).await?;
    Ok(())
}

/// Removes tenant `id`: its role, every key under its prefix, and its user.
pub async fn remove(client: &Client, id: &str) -> Result<(), IsolationError> {
    check(id)?;
    let p = prefix(id);
    let mut c = client.clone();
    step(id, "deleting role", Some("not found"), c.role_delete(id)).await?;
    let range = DeleteOptions::new().with_range(prefix_end(p.as_bytes()));
    step(
        id,
        "deleting keys",
        None,
        c.delete(p.as_bytes(), Some(range)),
    )
    .await?;
    step(id, "deleting user", Some("not found"), c.user_delete(id)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_with_a_slash_so_names_that_share_a_start_stay_apart() {
        assert_eq!(prefix("team"), "/team/");
        assert!(!prefix("team-a").starts_with(&prefix("team")));
        assert_eq!(apiserver_etcd_prefix("team"), "/team");
    }
}
