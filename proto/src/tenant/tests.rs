use super::*;
use crate::v1::{ComponentResources, ExtraArgs};

fn good() -> TenantClusterSpec {
    TenantClusterSpec {
        kubernetes_version: "1.35.4".into(),
        replicas: 2,
        network: Some(Network {
            service_cidr: "10.96.0.0/12".into(),
            pod_cidr: "10.244.0.0/16".into(),
            dns_service_ip: "10.96.0.10".into(),
            port: 6443,
            service_type: ServiceType::LoadBalancer as i32,
            endpoint_address: String::new(),
            extra_sans: vec!["api.acme.example".into()],
            authorized_networks: vec!["203.0.113.0/24".into(), "2001:db8::/32".into()],
            konnectivity: false,
        }),
        ..Default::default()
    }
}

#[test]
fn authorized_networks_are_networks_with_host_bits_clear() {
    for ok in [
        "0.0.0.0/0",
        "10.0.0.0/8",
        "192.0.2.7/32",
        "::/0",
        "2001:db8::/32",
    ] {
        assert!(authorized_network("n", ok).is_ok(), "{ok}");
    }
    for (bad, says) in [
        ("10.0.0.1/8", "host bits"),
        ("10.0.0.0", "CIDR notation"),
        ("10.0.0.0/33", "CIDR notation"),
        ("example.com/24", "CIDR notation"),
    ] {
        let e = authorized_network("network.authorized_networks", bad).unwrap_err();
        assert!(e.message.contains(says), "{bad}: {}", e.message);
    }
    let mut s = good();
    s.network.as_mut().unwrap().authorized_networks = vec!["10.1.2.3/16".into()];
    assert_eq!(fields(&s), ["network.authorized_networks"]);
}

#[test]
fn encryption_oidc_and_audit_settings_name_what_is_wrong() {
    let mut s = good();
    s.encryption = Some(Encryption {
        resources: vec![
            "configmaps".into(),
            "deployments.apps".into(),
            "*.apps".into(),
        ],
        key_rotation: 3,
    });
    s.authentication = Some(Authentication {
        oidc: vec![crate::v1::OidcIssuer {
            issuer_url: "https://idp.example/realms/a".into(),
            client_id: "kamaji".into(),
            ..Default::default()
        }],
    });
    s.audit = Some(Audit {
        preset: "metadata".into(),
        max_age_days: 30,
        ..Default::default()
    });
    assert_eq!(fields(&s), Vec::<String>::new());

    s.encryption.as_mut().unwrap().resources = vec!["Config Maps".into()];
    let o = &mut s.authentication.as_mut().unwrap().oidc;
    o[0].issuer_url = "http://idp.example".into();
    o[0].client_id = " ".into();
    s.audit = Some(Audit {
        preset: "everything".into(),
        max_age_days: 0,
        ..Default::default()
    });
    let mut f = fields(&s);
    f.sort();
    assert_eq!(
        f,
        [
            "audit.max_age_days",
            "audit.preset",
            "authentication.oidc[0].client_id",
            "authentication.oidc[0].issuer_url",
            "encryption.resources"
        ]
    );
    s = good();
    s.audit = Some(Audit {
        preset: "metadata".into(),
        policy: "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []".into(),
        max_age_days: 1,
    });
    assert_eq!(fields(&s), ["audit.policy"], "preset or policy, not both");
    assert!(key_rotation_change("encryption.key_rotation", 2, 1)
        .unwrap_err()
        .message
        .contains("only move forward"));
    assert!(key_rotation_change("encryption.key_rotation", 1, 1).is_ok());
}

/// What a skeptical user found the apiserver refusing after plan had accepted it, and the
/// valid values plan refused: each judged at plan now, on its attribute.
#[test]
fn what_kube_apiserver_refuses_is_refused_at_plan_and_what_it_takes_is_taken() {
    let message = |s: &TenantClusterSpec, f: &str| {
        tenant_cluster("acme", s)
            .into_iter()
            .find(|e| e.field == f)
            .map(|e| e.message)
            .unwrap_or_else(|| panic!("{f} not refused"))
    };
    let issuer = |f: &dyn Fn(&mut crate::v1::OidcIssuer)| {
        let mut s = good();
        let mut o = crate::v1::OidcIssuer {
            issuer_url: "https://idp.example".into(),
            client_id: "kamaji".into(),
            ..Default::default()
        };
        f(&mut o);
        s.authentication = Some(Authentication { oidc: vec![o] });
        s
    };
    let f = "authentication.oidc[0].issuer_url";
    assert!(message(
        &issuer(&|o| o.issuer_url = "https://user:pw@idp.example".into()),
        f
    )
    .contains("user or a password"));
    assert!(message(
        &issuer(&|o| o.issuer_url = "https://kubernetes.default.svc.cluster.local".into()),
        f
    )
    .contains("service-account issuer"));
    assert!(message(
        &issuer(&|o| o.groups_prefix = "oidc:".into()),
        "authentication.oidc[0].groups_prefix"
    )
    .contains("needs groups_claim"));
    assert!(message(
        &issuer(&|o| o.username_prefix = "system:".into()),
        "authentication.oidc[0].username_prefix"
    )
    .contains("reserves"));
    assert!(tenant_cluster(
        "acme",
        &issuer(&|o| {
            o.groups_claim = "groups".into();
            o.groups_prefix = "oidc:".into();
        })
    )
    .is_empty());

    let policy = |p: &str| {
        let mut s = good();
        s.audit = Some(Audit {
            policy: p.into(),
            max_age_days: 1,
            ..Default::default()
        });
        s
    };
    for (bad, says) in [
        (
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [",
            "does not parse",
        ),
        (
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []",
            "no rules",
        ),
        (
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything",
            "rules[0].level",
        ),
        (
            "# audit.k8s.io/v1 Policy\nkind: Policie",
            "not an audit.k8s.io/v1 Policy",
        ),
    ] {
        assert!(
            message(&policy(bad), "audit.policy").contains(says),
            "{bad}"
        );
    }
    assert!(tenant_cluster(
            "acme",
            &policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  omitStages: [RequestReceived]")
        )
        .is_empty());

    let plugins = |v: &str, p: &str| {
        let mut s = good();
        s.kubernetes_version = v.into();
        s.admission_plugins = vec![p.into()];
        s
    };
    assert!(message(&plugins("1.37.2", "Foo"), "admission_plugins")
        .contains("is not an admission plugin of Kubernetes 1.37"));
    assert!(
        message(&plugins("1.37.2", "podsecurity"), "admission_plugins")
            .contains("did you mean PodSecurity")
    );
    assert!(
        message(&plugins("1.37.2", "JobValidation"), "admission_plugins").contains("1.37"),
        "gone in 1.37"
    );
    assert!(tenant_cluster("acme", &plugins("1.36.3", "JobValidation")).is_empty());
    assert!(
        message(&plugins("1.37.2", "EventRateLimit"), "admission_plugins")
            .contains("configuration file")
    );
    assert!(tenant_cluster("acme", &plugins("1.37.2", "AlwaysPullImages")).is_empty());

    let mut s = good();
    s.resources = Some(crate::v1::ComponentResources {
        apiserver: Some(ResourceRequirements {
            memory_request: "2Gi".into(),
            memory_limit: "1e9".into(),
            cpu_request: "1e0".into(),
            cpu_limit: "2".into(),
        }),
        ..Default::default()
    });
    assert_eq!(fields(&s), ["resources.apiserver.memory_request"]);
    assert!(message(&s, "resources.apiserver.memory_request").contains("more than memory_limit"));
    assert_eq!(quantity_value("1e3"), Some(1000.0));
    assert_eq!(quantity_value("1.5Gi"), Some(1.5 * 1073741824.0));
    assert_eq!(quantity_value("1e"), None);

    let mut s = good();
    s.network.as_mut().unwrap().extra_sans = vec!["*.example.com".into(), "10.0.0.1".into()];
    assert!(tenant_cluster("acme", &s).is_empty());
    s.network.as_mut().unwrap().extra_sans = vec!["*.*.example.com".into()];
    assert_eq!(fields(&s), ["network.extra_sans"]);
}

#[test]
fn storage_quotas_are_refused_outside_1_mib_to_8_gib_and_0_means_the_reservation() {
    let mut s = good();
    for ok in [
        0,
        MIN_STORAGE_QUOTA_BYTES,
        64 << 20,
        crate::RECOMMENDED_MAX_QUOTA_BYTES,
    ] {
        s.storage_quota_bytes = ok;
        assert!(fields(&s).is_empty(), "{ok}");
    }
    for bad in [-1, 1000, crate::RECOMMENDED_MAX_QUOTA_BYTES + 1] {
        s.storage_quota_bytes = bad;
        assert_eq!(fields(&s), ["storage_quota_bytes"], "{bad}");
    }
}

#[test]
fn credential_rotations_go_one_generation_at_a_time_started_before_completed() {
    let field = |from, to| credential_rotation_change(from, to).map_err(|e| e.field);
    assert_eq!(field((0, false), (1, true)), Ok(()), "start");
    assert_eq!(field((1, true), (1, false)), Ok(()), "complete");
    assert_eq!(field((1, false), (1, false)), Ok(()), "nothing");
    let gen = Err("credential_rotation.generation".to_owned());
    let phase = Err("credential_rotation.phase".to_owned());
    assert_eq!(field((1, false), (0, false)), gen, "back");
    assert_eq!(field((0, false), (2, true)), gen, "skip");
    assert_eq!(
        field((1, true), (2, true)),
        gen,
        "another before completing"
    );
    assert_eq!(
        field((0, false), (1, false)),
        phase,
        "completed without the overlap"
    );
    assert_eq!(
        field((1, false), (1, true)),
        phase,
        "restart a completed one"
    );
    let mut s = good();
    s.credential_rotation = Some(CredentialRotation {
        generation: 1,
        phase: "begun".into(),
    });
    assert_eq!(fields(&s), ["credential_rotation.phase"]);
}

fn fields(spec: &TenantClusterSpec) -> Vec<String> {
    tenant_cluster("acme", spec)
        .into_iter()
        .map(|e| e.field)
        .collect()
}

#[test]
fn a_good_spec_passes() {
    assert_eq!(fields(&good()), Vec::<String>::new());
}

#[test]
fn versions_parse_and_only_supported_minors_pass() {
    assert_eq!(
        version("v", "1.35.4").unwrap(),
        Version {
            minor: 35,
            patch: 4
        }
    );
    assert_eq!(
        version("v", "v1.34.0").unwrap(),
        Version {
            minor: 34,
            patch: 0
        }
    );
    for bad in ["1.35", "2.35.0", "1.35.x", "", "1.35.4-rc.1", "1..0"] {
        assert!(
            version("v", bad)
                .unwrap_err()
                .message
                .contains("not a Kubernetes version"),
            "{bad}"
        );
    }
    assert!(version("v", "1.22.0")
        .unwrap_err()
        .message
        .contains("not supported"));
}

#[test]
fn the_dns_ip_must_be_one_the_apiserver_can_give_a_service() {
    let net = |cidr: &str, dns: &str| Network {
        service_cidr: cidr.into(),
        pod_cidr: "10.244.0.0/16".into(),
        dns_service_ip: dns.into(),
        port: 6443,
        service_type: ServiceType::ClusterIp as i32,
        ..Default::default()
    };
    for (cidr, dns, why) in [
        ("10.96.0.0/12", "10.96.0.0", "the network address"),
        ("10.96.0.0/12", "10.96.0.1", "the first address"),
        ("10.96.0.0/12", "10.111.255.255", "the broadcast address"),
        ("fd00::/108", "fd00::", "the network address"),
        ("fd00::/108", "fd00::1", "the first address"),
    ] {
        let errs = network(&net(cidr, dns));
        assert!(
            errs.iter()
                .any(|e| e.field == "network.dns_service_ip" && e.message.contains(why)),
            "{cidr} {dns}: {errs:?}"
        );
    }
    for (cidr, dns) in [
        ("10.96.0.0/12", "10.96.0.10"),
        ("fd00::/108", "fd00::a"),
        ("172.0.0.0/8", "172.0.0.10"),
    ] {
        assert!(network(&net(cidr, dns)).is_empty(), "{cidr} {dns}");
    }
}

#[test]
fn versions_with_leading_zeros_are_refused() {
    for v in ["1.035.2", "01.35.2", "1.35.02", "1.35.00"] {
        let e = version("kubernetes_version", v).unwrap_err();
        assert!(
            e.message.contains("is not a Kubernetes version"),
            "{v}: {e:?}"
        );
    }
    assert_eq!(
        version("v", "1.35.0").unwrap(),
        Version {
            minor: 35,
            patch: 0
        }
    );
}

#[test]
fn upgrades_move_one_minor_forward_at_a_time() {
    let v = |s| version("v", s).unwrap();
    assert!(upgrade("v", v("1.34.2"), v("1.34.5")).is_ok());
    assert!(upgrade("v", v("1.34.2"), v("1.35.0")).is_ok());
    assert!(upgrade("v", v("1.34.2"), v("1.36.0"))
        .unwrap_err()
        .message
        .contains("one minor at a time"));
    assert!(upgrade("v", v("1.35.0"), v("1.34.9"))
        .unwrap_err()
        .message
        .contains("cannot downgrade"));
    assert!(upgrade("v", v("1.35.3"), v("1.35.2"))
        .unwrap_err()
        .message
        .contains("cannot downgrade"));
}

#[test]
fn network_mistakes_name_the_nested_field() {
    let mut s = good();
    let n = s.network.as_mut().unwrap();
    n.pod_cidr = "10.96.0.0/16".into();
    n.dns_service_ip = "192.168.0.10".into();
    n.port = 0;
    n.extra_sans = vec!["not a name".into()];
    assert_eq!(
        fields(&s),
        [
            "network.pod_cidr",
            "network.dns_service_ip",
            "network.port",
            "network.extra_sans"
        ]
    );
    let mut s = good();
    s.network.as_mut().unwrap().service_cidr = "10.96.0.1/12".into();
    assert!(tenant_cluster("acme", &s)[0].message.contains("host bits"));
    let mut s = good();
    s.network.as_mut().unwrap().service_type = 0;
    assert_eq!(fields(&s), ["network.service_type"]);
}

#[test]
fn quantities_flags_plugins_and_placement_inputs_are_checked() {
    let mut s = good();
    s.resources = Some(ComponentResources {
        apiserver: Some(ResourceRequirements {
            cpu_request: "250m".into(),
            memory_request: "lots".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    s.extra_args = Some(ExtraArgs {
        apiserver: [("etcd-prefix".into(), "/x".into())].into(),
        ..Default::default()
    });
    s.admission_plugins = vec!["nodeRestriction".into()];
    s.datastore = "etcd-a".into();
    s.datastore_selector = [("tier".into(), "gold".into())].into();
    s.replicas = 0;
    assert_eq!(
        fields(&s),
        [
            "replicas",
            "datastore_selector",
            "resources.apiserver.memory_request",
            "admission_plugins",
            "extra_args.apiserver"
        ]
    );
    assert!(tenant_cluster("acme", &s)
        .iter()
        .any(|e| e.message.contains("--etcd-prefix is set by kamajid")));
    for q in ["250m", "1", "1.5", "512Mi", "2G", "0"] {
        assert!(quantity("q", q).is_ok(), "{q}");
    }
    for q in ["", "m", "1.2.3", "12mb", ".5", "-1"] {
        assert!(quantity("q", q).is_err(), "{q}");
    }
}

#[test]
fn long_names_are_refused() {
    assert_eq!(tenant_cluster(&"a".repeat(51), &good())[0].field, "name");
    assert!(tenant_cluster(&"a".repeat(50), &good()).is_empty());
}
