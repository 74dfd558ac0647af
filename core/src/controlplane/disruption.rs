//! The PodDisruptionBudget: a drain never takes more than one control-plane replica at once.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{meta, owner_labels, Tenant, DEPLOYMENT};

pub fn pdb(t: &Tenant<'_>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(t, DEPLOYMENT),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(owner_labels(t)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::spec::ServiceType;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn at_most_one_replica_is_disrupted_at_a_time() {
        let r = rendered(&spec(ServiceType::LoadBalancer));
        assert_eq!(
            r.pdb.spec.as_ref().unwrap().max_unavailable,
            Some(IntOrString::Int(1))
        );
    }
}
