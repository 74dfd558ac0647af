//! Terraform values to the API spec: defaults filled in, unknown values noted (so their
//! placeholders are not judged), and every known value judged at plan by the shared rules.

use std::collections::HashMap;

use kamaji_proto::errors::FieldError;
use kamaji_proto::tenant::{self as contract, defaults};
use kamaji_proto::v1;
use tf_provider::value::Value;
use tf_provider::Diagnostics;

use super::report::field_diag;
use super::state::*;
use crate::duration::parse_duration;
use crate::number::Number;

/// Collects the spec from state values, noting which paths are still unknown so their
/// (placeholder) values are not judged.
#[derive(Default)]
struct Reader {
    unknown: Vec<String>,
    /// Numbers that cannot be what the API carries (negative, fractions, too large), by path,
    /// judged by [`TenantClusterState::check`] on the number as written.
    invalid: Vec<(String, Number)>,
}

impl Reader {
    fn string(&mut self, path: &str, v: &Value<String>, default: &str) -> String {
        match v {
            Value::Value(s) => s.clone(),
            Value::Null => default.to_owned(),
            Value::Unknown => {
                self.unknown.push(path.to_owned());
                String::new()
            }
        }
    }

    fn int(&mut self, path: &str, v: &Value<Number>, default: u32) -> u32 {
        match v {
            Value::Value(n) => match n.whole().ok().and_then(|w| u32::try_from(w).ok()) {
                Some(w) => w,
                None => {
                    self.invalid.push((path.to_owned(), n.clone()));
                    default
                }
            },
            Value::Null => default,
            Value::Unknown => {
                self.unknown.push(path.to_owned());
                0
            }
        }
    }

    /// A whole number the API carries in 64 bits (its range is the contract's to judge).
    fn wide(&mut self, path: &str, v: &Value<Number>, default: i64) -> i64 {
        match v {
            Value::Value(n) => n.whole().unwrap_or_else(|_| {
                self.invalid.push((path.to_owned(), n.clone()));
                default
            }),
            Value::Null => default,
            Value::Unknown => {
                self.unknown.push(path.to_owned());
                0
            }
        }
    }

    /// A number whose 0 on the wire means "unset": a configured 0 is judged as written (and
    /// refused) instead of passing for the default, which would read back as null and make
    /// Terraform report an inconsistent result.
    fn wide_unset_zero(&mut self, path: &str, v: &Value<Number>) -> i64 {
        if matches!(v, Value::Value(Number::Whole(0))) {
            self.invalid.push((path.to_owned(), Number::Whole(0)));
        }
        self.wide(path, v, 0)
    }

    fn boolean(&mut self, path: &str, v: &Value<bool>, default: bool) -> bool {
        match v {
            Value::Value(b) => *b,
            Value::Null => default,
            Value::Unknown => {
                self.unknown.push(path.to_owned());
                default
            }
        }
    }

    fn list(&mut self, path: &str, v: &Value<StrList>) -> Vec<String> {
        match v {
            Value::Value(l) => l
                .iter()
                .filter_map(|e| match e {
                    Value::Value(s) => Some(s.clone()),
                    _ => {
                        self.unknown.push(path.to_owned());
                        None
                    }
                })
                .collect(),
            Value::Null => Vec::new(),
            Value::Unknown => {
                self.unknown.push(path.to_owned());
                Vec::new()
            }
        }
    }

    fn map(&mut self, path: &str, v: &Value<StrMap>) -> HashMap<String, String> {
        match v {
            Value::Value(m) => m
                .iter()
                .filter_map(|(k, e)| match e {
                    Value::Value(s) => Some((k.clone(), s.clone())),
                    _ => {
                        self.unknown.push(path.to_owned());
                        None
                    }
                })
                .collect(),
            Value::Null => HashMap::new(),
            Value::Unknown => {
                self.unknown.push(path.to_owned());
                HashMap::new()
            }
        }
    }

    fn requirements(
        &mut self,
        path: &str,
        v: &Value<Requirements>,
    ) -> Option<v1::ResourceRequirements> {
        let r = v.as_ref_option()?;
        let out = v1::ResourceRequirements {
            cpu_request: self.string(&format!("{path}.cpu_request"), &r.cpu_request, ""),
            memory_request: self.string(&format!("{path}.memory_request"), &r.memory_request, ""),
            cpu_limit: self.string(&format!("{path}.cpu_limit"), &r.cpu_limit, ""),
            memory_limit: self.string(&format!("{path}.memory_limit"), &r.memory_limit, ""),
        };
        (out != v1::ResourceRequirements::default()).then_some(out)
    }
}

impl TenantClusterState {
    /// The API spec these values describe, defaults filled in, and the attribute paths whose
    /// values are not known yet.
    pub fn spec(&self) -> (v1::TenantClusterSpec, Vec<String>) {
        let (spec, r) = self.read();
        (spec, r.unknown)
    }

    fn read(&self) -> (v1::TenantClusterSpec, Reader) {
        let mut r = Reader::default();
        let net = self.network.as_ref_option().cloned().unwrap_or_default();
        let service_type = r.string(
            "network.service_type",
            &net.service_type,
            defaults::SERVICE_TYPE,
        );
        let network = v1::Network {
            service_cidr: r.string(
                "network.service_cidr",
                &net.service_cidr,
                defaults::SERVICE_CIDR,
            ),
            pod_cidr: r.string("network.pod_cidr", &net.pod_cidr, defaults::POD_CIDR),
            dns_service_ip: r.string(
                "network.dns_service_ip",
                &net.dns_service_ip,
                defaults::DNS_SERVICE_IP,
            ),
            port: r.int("network.port", &net.port, defaults::PORT),
            service_type: contract::service_type("network.service_type", &service_type)
                .map(|t| t as i32)
                .unwrap_or_default(),
            endpoint_address: r.string("network.endpoint_address", &net.endpoint_address, ""),
            extra_sans: r.list("network.extra_sans", &net.extra_sans),
            authorized_networks: r.list("network.authorized_networks", &net.authorized_networks),
            konnectivity: r.boolean("network.konnectivity", &net.konnectivity, false),
        };
        let enc = self.encryption.as_ref_option().cloned().unwrap_or_default();
        let encryption = v1::Encryption {
            resources: r.list("encryption.resources", &enc.resources),
            key_rotation: r.int("encryption.key_rotation", &enc.key_rotation, 0),
        };
        let oidc: Vec<v1::OidcIssuer> = self
            .authentication
            .as_ref_option()
            .and_then(|a| a.oidc.as_ref_option())
            .map(|l| {
                l.iter()
                    .enumerate()
                    .filter_map(|(i, o)| o.as_ref_option().map(|o| (i, o)))
                    .map(|(i, o)| {
                        let f = |k: &str| format!("authentication.oidc[{i}].{k}");
                        v1::OidcIssuer {
                            issuer_url: r.string(&f("issuer_url"), &o.issuer_url, ""),
                            client_id: r.string(&f("client_id"), &o.client_id, ""),
                            username_claim: r.string(
                                &f("username_claim"),
                                &o.username_claim,
                                "sub",
                            ),
                            username_prefix: r.string(
                                &f("username_prefix"),
                                &o.username_prefix,
                                "",
                            ),
                            groups_claim: r.string(&f("groups_claim"), &o.groups_claim, ""),
                            groups_prefix: r.string(&f("groups_prefix"), &o.groups_prefix, ""),
                            ca_certificate: r.string(&f("ca_certificate"), &o.ca_certificate, ""),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let rot = self
            .credential_rotation
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        let credential_rotation = v1::CredentialRotation {
            generation: r.int("credential_rotation.generation", &rot.generation, 0),
            phase: r.string("credential_rotation.phase", &rot.phase, "completed"),
        };
        let audit = self.audit.as_ref_option().map(|a| v1::Audit {
            preset: r.string("audit.preset", &a.preset, ""),
            policy: r.string("audit.policy", &a.policy, ""),
            max_age_days: r.int("audit.max_age_days", &a.max_age_days, AUDIT_MAX_AGE_DAYS),
        });
        let maintenance_window =
            self.maintenance_window
                .as_ref_option()
                .map(|w| v1::MaintenanceWindow {
                    start: r.string("maintenance_window.start", &w.start, ""),
                    duration_hours: r.int(
                        "maintenance_window.duration_hours",
                        &w.duration_hours,
                        WINDOW_HOURS,
                    ),
                    days: r.list("maintenance_window.days", &w.days),
                });
        let maintenance_exclusions: Vec<v1::MaintenanceExclusion> = self
            .maintenance_exclusion
            .as_ref_option()
            .map(|l| {
                l.iter()
                    .enumerate()
                    .filter_map(|(i, x)| x.as_ref_option().map(|x| (i, x)))
                    .map(|(i, x)| {
                        let f = |k: &str| format!("maintenance_exclusion[{i}].{k}");
                        v1::MaintenanceExclusion {
                            name: r.string(&f("name"), &x.name, ""),
                            start: r.string(&f("start"), &x.start, ""),
                            end: r.string(&f("end"), &x.end, ""),
                            scope: r.string(&f("scope"), &x.scope, "no_upgrades"),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        // "none" is sent as the API's empty default, as a spec without a channel was stored.
        let release_channel = match r.string("release_channel", &self.release_channel, "") {
            c if c == "none" => String::new(),
            c => c,
        };
        let res = self.resources.as_ref_option().cloned().unwrap_or_default();
        let resources = v1::ComponentResources {
            apiserver: r.requirements("resources.apiserver", &res.apiserver),
            controller_manager: r
                .requirements("resources.controller_manager", &res.controller_manager),
            scheduler: r.requirements("resources.scheduler", &res.scheduler),
        };
        let x = self.extra_args.as_ref_option().cloned().unwrap_or_default();
        let extra_args = v1::ExtraArgs {
            apiserver: r.map("extra_args.apiserver", &x.apiserver),
            controller_manager: r.map("extra_args.controller_manager", &x.controller_manager),
            scheduler: r.map("extra_args.scheduler", &x.scheduler),
        };
        let addons = self.addons.as_ref_option().cloned().unwrap_or_default();
        let backup_schedule = self
            .backup_schedule
            .as_ref_option()
            .map(|b| v1::BackupSchedule {
                interval: r.string("backup_schedule.interval", &b.interval, ""),
                retention_count: r.int(
                    "backup_schedule.retention_count",
                    &b.retention_count,
                    kamaji_model::backup::DEFAULT_RETENTION_COUNT,
                ),
                retention_max_age: r.string(
                    "backup_schedule.retention_max_age",
                    &b.retention_max_age,
                    "",
                ),
            });
        let spec = v1::TenantClusterSpec {
            kubernetes_version: r.string("kubernetes_version", &self.kubernetes_version, ""),
            replicas: r.int("replicas", &self.replicas, defaults::REPLICAS),
            datastore: r.string("datastore", &self.datastore, ""),
            datastore_selector: r.map("datastore_selector", &self.datastore_selector),
            network: Some(network),
            resources: (resources != v1::ComponentResources::default()).then_some(resources),
            admission_plugins: r.list("admission_plugins", &self.admission_plugins),
            extra_args: (extra_args != v1::ExtraArgs::default()).then_some(extra_args),
            labels: r.map("labels", &self.labels),
            deletion_protection: self
                .deletion_protection
                .as_ref_option()
                .copied()
                .unwrap_or(false),
            hibernated: self.hibernated.as_ref_option().copied().unwrap_or(false),
            public_issuer: self.public_issuer.as_ref_option().copied().unwrap_or(false),
            restore_from: r.string("restore_from", &self.restore_from, ""),
            restore_keep_identity: r.boolean(
                "restore_keep_identity",
                &self.restore_keep_identity,
                false,
            ),
            backup_schedule,
            release_channel,
            maintenance_window,
            maintenance_exclusions,
            addons: Some(v1::Addons {
                coredns: r.boolean("addons.coredns", &addons.coredns, true),
                kube_proxy: r.boolean("addons.kube_proxy", &addons.kube_proxy, true),
            }),
            encryption: (encryption != v1::Encryption::default()).then_some(encryption),
            authentication: (!oidc.is_empty()).then_some(v1::Authentication { oidc }),
            audit,
            credential_rotation: (credential_rotation
                != v1::CredentialRotation {
                    generation: 0,
                    phase: "completed".into(),
                })
            .then_some(credential_rotation),
            storage_quota_bytes: r
                .wide_unset_zero("storage_quota_bytes", &self.storage_quota_bytes),
            write_budget_bytes_per_second: r.wide_unset_zero(
                "write_budget_bytes_per_second",
                &self.write_budget_bytes_per_second,
            ),
        };
        (spec, r)
    }

    /// Every check the API makes that can be made from known values, plus the service type
    /// name and the timeouts, reported on the attributes at fault.
    pub fn check(&self, diags: &mut Diagnostics) {
        let (spec, read) = self.read();
        let mut unknown = read.unknown;
        let name = match &self.name {
            Value::Value(n) => n.clone(),
            _ => {
                unknown.push("name".into());
                String::new()
            }
        };
        let mut errors = contract::tenant_cluster(&name, &spec);
        if let Some(Value::Value(t)) = self.network.as_ref_option().map(|n| &n.service_type) {
            if let Err(e) = contract::service_type("network.service_type", t) {
                errors.retain(|x| x.field != e.field);
                errors.push(e);
            }
        }
        // A number the API cannot carry is judged as written, not by its placeholder.
        for (field, n) in &read.invalid {
            errors.retain(|e| &e.field != field);
            let range = match field.as_str() {
                "replicas" => contract::replicas,
                "network.port" => contract::port,
                "audit.max_age_days" => contract::audit_max_age,
                "storage_quota_bytes" => contract::storage_quota,
                "write_budget_bytes_per_second" => contract::write_budget,
                // encryption.key_rotation, credential_rotation.generation
                _ => contract::key_rotation,
            };
            errors.push(match n.whole() {
                Ok(w) => range(field, w).err().unwrap_or_else(|| {
                    FieldError::new(field.clone(), format!("{w} is out of range"))
                }),
                Err(why) => FieldError::new(field.clone(), why),
            });
        }
        let judged = |field: &str| {
            let field = depends_on(field);
            !unknown
                .iter()
                .any(|u| field == u || field.starts_with(&format!("{u}.")))
        };
        for e in errors.into_iter().filter(|e| judged(&e.field)) {
            field_diag(diags, e);
        }
        if let Some(t) = self.timeouts.as_ref_option() {
            for (k, v) in [
                ("create", &t.create),
                ("update", &t.update),
                ("delete", &t.delete),
            ] {
                let why = match v.as_ref_option().map(|s| (s, parse_duration(s))) {
                    Some((s, None)) => {
                        format!("{s:?} is not a duration such as \"30s\", \"20m\" or \"1h30m\"")
                    }
                    Some((s, Some(d))) if d.is_zero() => {
                        format!("{s:?} leaves no time to wait: give a duration longer than 0s")
                    }
                    _ => continue,
                };
                field_diag(diags, FieldError::new(format!("timeouts.{k}"), why));
            }
        }
    }
}

/// The attribute whose value a refusal of `field` is judged with, when it is another one: whether
/// an identity can be kept depends on `restore_from`, often a reference unknown at plan.
pub(super) fn depends_on(field: &str) -> &str {
    match field {
        "restore_keep_identity" => "restore_from",
        f => f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TenantClusterState {
        TenantClusterState {
            name: Value::Value("acme".into()),
            kubernetes_version: Value::Value("1.35.2".into()),
            ..Default::default()
        }
    }

    fn errors(s: &TenantClusterState) -> Vec<String> {
        let mut d = Diagnostics::default();
        s.check(&mut d);
        d.errors.iter().map(|e| e.summary.to_string()).collect()
    }

    #[test]
    fn defaults_make_a_valid_spec() {
        assert!(errors(&config()).is_empty(), "{:?}", errors(&config()));
        let (spec, unknown) = config().spec();
        assert!(unknown.is_empty());
        let net = spec.network.unwrap();
        assert_eq!(
            (net.service_cidr.as_str(), net.port, spec.replicas),
            (defaults::SERVICE_CIDR, defaults::PORT, defaults::REPLICAS)
        );
        assert_eq!(net.service_type, v1::ServiceType::LoadBalancer as i32);
    }

    #[test]
    fn unknown_values_are_judged_at_apply_not_at_plan() {
        let mut s = config();
        s.kubernetes_version = Value::Unknown;
        s.network = Value::Value(Network {
            service_cidr: Value::Unknown,
            dns_service_ip: Value::Value("10.0.0.10".into()),
            ..Default::default()
        });
        assert!(errors(&s).is_empty(), "{:?}", errors(&s));
        s.kubernetes_version = Value::Value("1.20.0".into());
        assert_eq!(errors(&s), vec!["Invalid kubernetes_version"]);
    }

    #[test]
    fn bad_settings_name_their_attribute() {
        let mut s = config();
        s.network = Value::Value(Network {
            service_type: Value::Value("Ingress".into()),
            port: Value::Value(Number::Whole(70000)),
            ..Default::default()
        });
        s.timeouts = Value::Value(Timeouts {
            create: Value::Value("soon".into()),
            ..Default::default()
        });
        let mut e = errors(&s);
        e.sort();
        assert_eq!(
            e,
            vec![
                "Invalid network.port",
                "Invalid network.service_type",
                "Invalid timeouts.create"
            ]
        );
    }

    #[test]
    fn numbers_the_api_cannot_carry_are_judged_as_written() {
        let mut s = config();
        s.replicas = Value::Value(Number::Whole(-1));
        let mut d = Diagnostics::default();
        s.check(&mut d);
        let msgs: Vec<String> = d
            .errors
            .iter()
            .map(|e| e.detail.lines().next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(msgs, ["-1 is not between 1 and 9"]);
        s.replicas = Value::Value(Number::Other("1.5".into()));
        s.network = Value::Value(Network {
            port: Value::Value(Number::Other("9223372036854775808".into())),
            ..Default::default()
        });
        let mut e = errors(&s);
        e.sort();
        assert_eq!(e, ["Invalid network.port", "Invalid replicas"]);
    }

    #[test]
    fn storage_quotas_are_judged_at_plan_on_the_attribute() {
        let detail = |q: Number| {
            let mut s = config();
            s.storage_quota_bytes = Value::Value(q);
            let mut d = Diagnostics::default();
            s.check(&mut d);
            d.errors
                .iter()
                .map(|e| (e.summary.clone(), e.detail.clone()))
                .collect::<Vec<_>>()
        };
        assert!(detail(Number::Whole(64 << 20)).is_empty());
        for bad in [
            Number::Whole(-1),
            Number::Whole(1000),
            Number::Other("1.5".into()),
            Number::Other("9223372036854775808".into()),
        ] {
            let e = detail(bad.clone());
            assert_eq!(e.len(), 1, "{bad:?}: {e:?}");
            assert_eq!(e[0].0, "Invalid storage_quota_bytes");
        }
        assert!(detail(Number::Whole(1000))[0].1.contains("1 MiB"));
        // 0 is not "the default": refused at plan, not read back as null after apply.
        let zero = detail(Number::Whole(0));
        assert_eq!(zero.len(), 1, "{zero:?}");
        assert!(zero[0].1.starts_with("0 is not between"), "{zero:?}");
        assert!(detail(Number::Other("1.5".into()))[0]
            .1
            .contains("not a whole number"));
    }
}
