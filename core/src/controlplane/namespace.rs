//! The tenant's namespace in the admin cluster, under the `restricted` Pod Security level.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{owner_labels, Tenant};

pub fn namespace(t: &Tenant<'_>) -> Namespace {
    let mut labels = owner_labels(t);
    labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        "restricted".into(),
    );
    Namespace {
        metadata: ObjectMeta {
            name: Some(t.name.namespace()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}
