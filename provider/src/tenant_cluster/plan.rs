//! What a plan of a tenant cluster shows: defaults filled in, what kamajid will compute left
//! unknown, which changes replace the cluster, and which the shared rules refuse.

use kamaji_model::change::IMMUTABLE;
use kamaji_proto::errors::FieldError;
use kamaji_proto::tenant::{self as contract, defaults};
use kamaji_proto::v1;
use tf_provider::value::Value;
use tf_provider::AttributePath;

use super::report::attribute_path;
use super::state::*;
use crate::number::Number;

impl TenantClusterState {
    /// Fills in the defaults of unset settings, as the plan must show them.
    pub fn with_defaults(mut self) -> Self {
        if self.replicas.is_null() {
            self.replicas = Value::Value(defaults::REPLICAS.into());
        }
        if self.deletion_protection.is_null() {
            self.deletion_protection = Value::Value(false);
        }
        if self.hibernated.is_null() {
            self.hibernated = Value::Value(false);
        }
        if self.public_issuer.is_null() {
            self.public_issuer = Value::Value(false);
        }
        if self.restore_keep_identity.is_null() {
            self.restore_keep_identity = Value::Value(false);
        }
        let mut net = self.network.as_ref_option().cloned().unwrap_or_default();
        let fill = |v: &mut Value<String>, d: &str| {
            if v.is_null() {
                *v = Value::Value(d.to_owned());
            }
        };
        fill(&mut net.service_cidr, defaults::SERVICE_CIDR);
        fill(&mut net.pod_cidr, defaults::POD_CIDR);
        fill(&mut net.dns_service_ip, defaults::DNS_SERVICE_IP);
        fill(&mut net.service_type, defaults::SERVICE_TYPE);
        if net.port.is_null() {
            net.port = Value::Value(defaults::PORT.into());
        }
        if net.konnectivity.is_null() {
            net.konnectivity = Value::Value(false);
        }
        self.network = Value::Value(net);
        self.resources = Value::Value(
            self.resources
                .as_ref_option()
                .cloned()
                .unwrap_or_default()
                .groups(),
        );
        if self.extra_args.is_null() {
            self.extra_args = Value::Value(ExtraArgs::default());
        }
        let mut addons = self.addons.as_ref_option().cloned().unwrap_or_default();
        for a in [&mut addons.coredns, &mut addons.kube_proxy] {
            if a.is_null() {
                *a = Value::Value(true);
            }
        }
        self.addons = Value::Value(addons);
        let mut enc = self.encryption.as_ref_option().cloned().unwrap_or_default();
        if enc.key_rotation.is_null() {
            enc.key_rotation = Value::Value(Number::Whole(0));
        }
        self.encryption = Value::Value(enc);
        let mut authn = self
            .authentication
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        if let Value::Value(list) = &mut authn.oidc {
            for o in list.iter_mut().filter_map(|o| match o {
                Value::Value(o) => Some(o),
                _ => None,
            }) {
                fill(&mut o.username_claim, "sub");
            }
        }
        self.authentication = Value::Value(authn);
        let mut rot = self
            .credential_rotation
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        if rot.generation.is_null() {
            rot.generation = Value::Value(Number::Whole(0));
        }
        fill(&mut rot.phase, "completed");
        self.credential_rotation = Value::Value(rot);
        if let Value::Value(a) = &mut self.audit {
            if a.max_age_days.is_null() {
                a.max_age_days = Value::Value(AUDIT_MAX_AGE_DAYS.into());
            }
        }
        fill(&mut self.release_channel, "none");
        if let Value::Value(w) = &mut self.maintenance_window {
            if w.duration_hours.is_null() {
                w.duration_hours = Value::Value(WINDOW_HOURS.into());
            }
        }
        if let Value::Value(b) = &mut self.backup_schedule {
            if b.retention_count.is_null() {
                b.retention_count =
                    Value::Value(kamaji_model::backup::DEFAULT_RETENTION_COUNT.into());
            }
        }
        if let Value::Value(list) = &mut self.maintenance_exclusion {
            for x in list.iter_mut().filter_map(|x| match x {
                Value::Value(x) => Some(x),
                _ => None,
            }) {
                fill(&mut x.scope, "no_upgrades");
            }
        }
        if self.timeouts.is_null() {
            self.timeouts = Value::Value(Timeouts::default());
        }
        self
    }

    /// Marks what kamajid reports as not known until apply.
    pub fn unknown_status(mut self) -> Self {
        self.current_version = Value::Unknown;
        self.status = Value::Unknown;
        self.status_message = Value::Unknown;
        self.certificates_expire_at = Value::Unknown;
        self.encryption_key_rotation = Value::Unknown;
        self.storage_used_bytes = Value::Unknown;
        self.storage_keys = Value::Unknown;
        self.storage_write_bytes_per_second = Value::Unknown;
        self.storage_history_bytes = Value::Unknown;
        self.last_upgrade = Value::Unknown;
        self.next_upgrade = Value::Unknown;
        self.last_backup_at = Value::Unknown;
        self.last_backup_id = Value::Unknown;
        self.last_backup_error = Value::Unknown;
        self.next_backup_at = Value::Unknown;
        self
    }

    pub fn unknown_outputs(mut self) -> Self {
        self.uid = Value::Unknown;
        self.endpoint = Value::Unknown;
        self.cluster_ca_certificate = Value::Unknown;
        self.ca_cert_hash = Value::Unknown;
        self.admin_kubeconfig = Value::Unknown;
        self.client_certificate = Value::Unknown;
        self.client_key = Value::Unknown;
        self.service_account_issuer = Value::Unknown;
        self.unknown_status()
    }
}

/// The attributes whose change replaces the cluster: its name, and the fields kamajid fixes at
/// creation ([`IMMUTABLE`]) that `changes` (the model's verdict) refuses or are not known yet.
pub(super) fn replacements(
    prior: &TenantClusterState,
    planned: &TenantClusterState,
    changes: &[FieldError],
    unknown: &[String],
) -> Vec<AttributePath> {
    let mut out = Vec::new();
    if prior.name != planned.name {
        out.push(AttributePath::new("name"));
    }
    for f in IMMUTABLE {
        if unknown.iter().any(|u| u == f) || changes.iter().any(|e| e.field == f) {
            out.push(attribute_path(f));
        }
    }
    out
}

/// Whether a refusal can be judged now: no value of its block is still unknown (kamajid judges
/// those at apply).
pub(super) fn judged_now(e: &FieldError, unknown: &[String]) -> bool {
    let block = |f: &str| {
        super::to_api::depends_on(f)
            .split(['.', '['])
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    !unknown.iter().any(|u| block(u) == block(&e.field))
}

/// The spec in state before and the spec to send, and what is unknown in the latter. The
/// `datastore` in state is where kamajid placed the cluster; it is sent only when the
/// configuration names one: a cluster placed by kamajid stays free to move (a drain, another
/// selector), and naming another datastore moves it.
pub(super) fn specs_to_send(
    prior: &TenantClusterState,
    planned: &TenantClusterState,
    config: &TenantClusterState,
) -> (v1::TenantClusterSpec, v1::TenantClusterSpec, Vec<String>) {
    let named = !config.datastore.is_null();
    let (mut old, mut new) = (prior.clone(), planned.clone());
    if !named {
        old.datastore = Value::Null;
        new.datastore = Value::Null;
    }
    let (old_spec, _) = old.spec();
    let (new_spec, unknown) = new.spec();
    (old_spec, new_spec, unknown)
}

/// An update as planned before kamajid is asked about it.
pub(super) struct Update {
    /// The state to show: defaults filled in, what kamajid computes unknown where it may move.
    pub planned: TenantClusterState,
    /// Attributes whose change replaces the cluster.
    pub replace: Vec<AttributePath>,
    /// What the shared rules refuse of an in-place change, judged on known values only.
    pub refused: Vec<FieldError>,
    pub old_spec: v1::TenantClusterSpec,
    pub new_spec: v1::TenantClusterSpec,
    /// Attribute paths not known until apply.
    pub unknown: Vec<String>,
}

/// Plans moving `prior` to `proposed` (Terraform's merge of `config` into the prior state).
pub(super) fn update(
    prior: &TenantClusterState,
    proposed: TenantClusterState,
    config: &TenantClusterState,
) -> Update {
    let mut planned = proposed;
    // Unset optional settings go back to their defaults rather than keep old values.
    if config.replicas.is_null() {
        planned.replicas = Value::Null;
    }
    if config.deletion_protection.is_null() {
        planned.deletion_protection = Value::Null;
    }
    if config.hibernated.is_null() {
        planned.hibernated = Value::Null;
    }
    if config.public_issuer.is_null() {
        planned.public_issuer = Value::Null;
    }
    if config.restore_keep_identity.is_null() {
        planned.restore_keep_identity = Value::Null;
    }
    if config.release_channel.is_null() {
        planned.release_channel = Value::Null;
    }
    if let (Value::Value(p), Some(c)) = (
        &mut planned.maintenance_window,
        config.maintenance_window.as_ref_option(),
    ) {
        if c.duration_hours.is_null() {
            p.duration_hours = Value::Null;
        }
    }
    if let (Value::Value(p), Some(c)) = (
        &mut planned.backup_schedule,
        config.backup_schedule.as_ref_option(),
    ) {
        if c.retention_count.is_null() {
            p.retention_count = Value::Null;
        }
    }
    if let (Value::Value(pl), Value::Value(cl)) = (
        &mut planned.maintenance_exclusion,
        &config.maintenance_exclusion,
    ) {
        for (px, cx) in pl.iter_mut().zip(cl) {
            if let (Value::Value(px), Value::Value(cx)) = (px, cx) {
                if cx.scope.is_null() {
                    px.scope = Value::Null;
                }
            }
        }
    }
    if let (Value::Value(p), Some(c)) = (&mut planned.addons, config.addons.as_ref_option()) {
        for (pv, cv) in [
            (&mut p.coredns, &c.coredns),
            (&mut p.kube_proxy, &c.kube_proxy),
        ] {
            if cv.is_null() {
                *pv = Value::Null;
            }
        }
    }
    if let (Value::Value(p), Some(c)) = (&mut planned.audit, config.audit.as_ref_option()) {
        if c.max_age_days.is_null() {
            p.max_age_days = Value::Null;
        }
    }
    if let (Value::Value(p), Some(c)) = (
        &mut planned.authentication,
        config.authentication.as_ref_option(),
    ) {
        if let (Value::Value(pl), Value::Value(cl)) = (&mut p.oidc, &c.oidc) {
            for (po, co) in pl.iter_mut().zip(cl) {
                if let (Value::Value(po), Value::Value(co)) = (po, co) {
                    if co.username_claim.is_null() {
                        po.username_claim = Value::Null;
                    }
                }
            }
        }
    }
    if let (Value::Value(p), Some(c)) = (&mut planned.network, config.network.as_ref_option()) {
        for (pv, cv) in [
            (&mut p.service_cidr, &c.service_cidr),
            (&mut p.pod_cidr, &c.pod_cidr),
            (&mut p.dns_service_ip, &c.dns_service_ip),
            (&mut p.service_type, &c.service_type),
        ] {
            if cv.is_null() {
                *pv = Value::Null;
            }
        }
        if c.port.is_null() {
            p.port = Value::Null;
        }
        if c.konnectivity.is_null() {
            p.konnectivity = Value::Null;
        }
    }
    planned = planned.with_defaults();
    // Another selector may move the cluster: where to is known after apply.
    if config.datastore.is_null() && planned.datastore_selector != prior.datastore_selector {
        planned.datastore = Value::Unknown;
    }
    let (old_spec, new_spec, unknown) = specs_to_send(prior, &planned, config);
    let changes = contract::change(&old_spec, &new_spec);
    let replace = replacements(prior, &planned, &changes, &unknown);
    // A replaced cluster is a new one: no transition to judge.
    let refused = if replace.is_empty() {
        changes
            .into_iter()
            .filter(|e| judged_now(e, &unknown))
            .collect()
    } else {
        Vec::new()
    };
    Update {
        planned,
        replace,
        refused,
        old_spec,
        new_spec,
        unknown,
    }
}

#[cfg(test)]
mod tests {
    use kamaji_proto::tenant::cases::cases;
    use tf_provider::Diagnostics;

    use super::*;
    use crate::tenant_cluster::report::attribute_path;

    /// The Terraform values a user would write for `spec`.
    fn written(spec: &v1::TenantClusterSpec) -> TenantClusterState {
        let tc = v1::TenantCluster {
            name: "acme".into(),
            spec: Some(spec.clone()),
            ..Default::default()
        };
        TenantClusterState::from_proto(&tc, None, &TenantClusterState::default())
    }

    /// The provider's verdict on every case of the table kamajid's tests run too: the
    /// configuration is checked as at any plan, and a change is planned from the prior state;
    /// a field fixed at creation shows as a replacement rather than an error.
    #[test]
    fn the_plan_reaches_the_shared_verdict_on_every_case() {
        for case in cases() {
            let config = written(&case.new);
            let mut diags = Diagnostics::default();
            config.check(&mut diags);
            let mut fields: Vec<String> = diags
                .errors
                .iter()
                .map(|e| e.summary.trim_start_matches("Invalid ").to_owned())
                .collect();
            if let (Some(old), true) = (&case.old, fields.is_empty()) {
                let u = update(&written(old), config.clone(), &config);
                fields.extend(u.refused.into_iter().map(|e| e.field));
                fields.extend(
                    IMMUTABLE
                        .into_iter()
                        .filter(|f| u.replace.contains(&attribute_path(f)))
                        .map(str::to_owned),
                );
            }
            fields.sort();
            assert_eq!(fields, case.refused, "{}", case.name);
        }
    }

    /// Release channel, window and exclusions read back from Terraform values as kamajid
    /// stored them, defaults included (an unset channel is "none", sent as the API's empty one).
    #[test]
    fn maintenance_settings_round_trip() {
        let full = kamaji_proto::tenant::cases::full();
        let (spec, unknown) = written(&full).with_defaults().spec();
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(spec.release_channel, full.release_channel);
        assert_eq!(spec.maintenance_window, full.maintenance_window);
        assert_eq!(spec.maintenance_exclusions, full.maintenance_exclusions);
        let plain = written(&kamaji_proto::tenant::cases::base()).with_defaults();
        assert_eq!(plain.release_channel, Value::Value("none".to_owned()));
        let (spec, _) = plain.spec();
        assert_eq!(spec.release_channel, "");
        let mut defaulted = written(&full);
        if let Value::Value(w) = &mut defaulted.maintenance_window {
            w.duration_hours = Value::Null;
        }
        let (spec, _) = defaulted.with_defaults().spec();
        assert_eq!(
            spec.maintenance_window.unwrap().duration_hours,
            WINDOW_HOURS
        );
    }

    #[test]
    fn unknown_values_are_left_to_kamajid_and_unchanged_specs_plan_nothing() {
        let base = written(&kamaji_proto::tenant::cases::base());
        let u = update(&base, base.clone(), &base);
        assert!(u.replace.is_empty() && u.refused.is_empty());
        assert_eq!(u.old_spec, u.new_spec);
        let mut later = base.clone();
        if let Value::Value(e) = &mut later.encryption {
            e.key_rotation = Value::Unknown;
        }
        later.kubernetes_version = Value::Unknown;
        let u = update(&base, later.clone(), &later);
        assert!(u.refused.is_empty(), "{:?}", u.refused);
        assert!(u.unknown.contains(&"kubernetes_version".to_owned()));
        let mut moved = base.clone();
        if let Value::Value(n) = &mut moved.network {
            n.pod_cidr = Value::Unknown;
        }
        let u = update(&base, moved.clone(), &moved);
        assert_eq!(u.replace, [attribute_path("network.pod_cidr")]);
    }
}
