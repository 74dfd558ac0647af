use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rcgen::KeyPair;

use super::*;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

struct Cert {
    der: Vec<u8>,
}

impl Cert {
    fn new(pem: &str) -> Self {
        let (_, p) = parse_x509_pem(pem.as_bytes()).unwrap();
        Self { der: p.contents }
    }
    fn with<R>(&self, f: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> R) -> R {
        let (_, c) = x509_parser::parse_x509_certificate(&self.der).unwrap();
        f(&c)
    }
    fn cn(&self) -> String {
        self.with(|c| {
            c.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
    }
    fn orgs(&self) -> Vec<String> {
        self.with(|c| {
            c.subject()
                .iter_organization()
                .map(|o| o.as_str().unwrap().to_owned())
                .collect()
        })
    }
    fn sans(&self) -> Vec<String> {
        self.with(|c| {
            c.subject_alternative_name()
                .unwrap()
                .map(|s| {
                    s.value
                        .general_names
                        .iter()
                        .map(|n| match n {
                            GeneralName::DNSName(d) => d.to_string(),
                            GeneralName::IPAddress(ip) if ip.len() == 4 => {
                                IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string()
                            }
                            other => format!("{other:?}"),
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
    }
    fn server_auth(&self) -> bool {
        self.with(|c| {
            c.extended_key_usage()
                .unwrap()
                .is_some_and(|e| e.value.server_auth)
        })
    }
    fn client_auth(&self) -> bool {
        self.with(|c| {
            c.extended_key_usage()
                .unwrap()
                .is_some_and(|e| e.value.client_auth)
        })
    }
    fn is_ca(&self) -> bool {
        self.with(|c| c.basic_constraints().unwrap().is_some_and(|b| b.value.ca))
    }
    fn signed_by(&self, ca: &Cert) -> bool {
        let (_, issuer) = x509_parser::parse_x509_certificate(&ca.der).unwrap();
        self.with(|c| {
            c.verify_signature(Some(issuer.public_key())).is_ok() && c.issuer() == issuer.subject()
        })
    }
}

pub(super) fn spec() -> TenantPkiSpec {
    TenantPkiSpec {
        tenant_id: crate::ids::TenantId::parse("acme-7f3k2").unwrap(),
        service_cidr: "10.96.0.0/12".parse().unwrap(),
        dns_domain: "cluster.local".into(),
        external_sans: vec!["203.0.113.10".into(), "api.acme.example".into()],
        leaf_validity: LEAF_VALIDITY,
    }
}

#[test]
fn every_certificate_chains_to_its_ca_with_the_names_kubernetes_expects() {
    let etcd_ca = new_ca("etcd client CA").unwrap();
    let pki = mint(&spec(), &etcd_ca).unwrap();
    let ca = Cert::new(&pki.ca.cert);
    let fp_ca = Cert::new(&pki.front_proxy_ca.cert);
    let etcd = Cert::new(&etcd_ca.cert);
    assert!(ca.is_ca() && fp_ca.is_ca());
    assert_eq!(
        (ca.cn(), fp_ca.cn()),
        ("kubernetes".into(), "front-proxy-ca".into())
    );

    // (certificate, issuer, CN, O, server?, client?)
    let table = [
        (&pki.apiserver, &ca, "kube-apiserver", vec![], true, false),
        (
            &pki.apiserver_kubelet_client,
            &ca,
            "kube-apiserver-kubelet-client",
            vec!["system:masters"],
            false,
            true,
        ),
        (
            &pki.admin,
            &ca,
            "kubernetes-admin",
            vec!["system:masters"],
            false,
            true,
        ),
        (
            &pki.controller_manager,
            &ca,
            "system:kube-controller-manager",
            vec![],
            false,
            true,
        ),
        (
            &pki.scheduler,
            &ca,
            "system:kube-scheduler",
            vec![],
            false,
            true,
        ),
        (
            &pki.front_proxy_client,
            &fp_ca,
            "front-proxy-client",
            vec![],
            false,
            true,
        ),
        (&pki.etcd_client, &etcd, "acme-7f3k2", vec![], false, true),
    ];
    for (pem, issuer, cn, orgs, server, client) in table {
        let c = Cert::new(&pem.cert);
        assert_eq!(c.cn(), cn);
        assert_eq!(c.orgs(), orgs, "{cn}");
        assert!(c.signed_by(issuer), "{cn} does not chain to its CA");
        assert!(!c.is_ca(), "{cn} must not be a CA");
        assert_eq!(
            (c.server_auth(), c.client_auth()),
            (server, client),
            "{cn} usages"
        );
        // Each certificate has its own key, matching it.
        kamaji_proto::validate::key_pair("cert", &pem.cert, "key", &pem.key).unwrap();
    }
    assert!(
        !Cert::new(&pki.admin.cert).signed_by(&fp_ca),
        "a front-proxy CA must not vouch for the admin"
    );
}

#[test]
fn the_apiserver_certificate_covers_every_name_it_is_reached_by() {
    let pki = mint(&spec(), &new_ca("etcd").unwrap()).unwrap();
    let sans = Cert::new(&pki.apiserver.cert).sans();
    for want in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        "10.96.0.1",
        "203.0.113.10",
        "api.acme.example",
    ] {
        assert!(
            sans.iter().any(|s| s == want),
            "{want} missing from {sans:?}"
        );
    }
}

#[test]
fn a_serving_certificate_is_reissued_exactly_when_its_names_change() {
    let mut pki = mint(&spec(), &new_ca("etcd").unwrap()).unwrap();
    assert!(serves_exactly(&pki.apiserver.cert, &spec()).unwrap());
    let first = pki.apiserver.clone();

    let mut more = spec();
    more.external_sans.push("2001:DB8::1".into());
    assert!(!serves_exactly(&pki.apiserver.cert, &more).unwrap());
    reissue_apiserver(&mut pki, &more).unwrap();
    assert!(serves_exactly(&pki.apiserver.cert, &more).unwrap());
    assert!(covers(&pki.apiserver.cert, "[2001:db8::1]"));
    assert!(covers(&pki.apiserver.cert, "API.acme.example"));
    assert_ne!(pki.apiserver.key, first.key, "a re-issue gets a fresh key");
    assert!(
        Cert::new(&pki.apiserver.cert).signed_by(&Cert::new(&pki.ca.cert)),
        "same CA"
    );

    // A name taken out of the spec is a change too: the old certificate still carries it.
    let mut fewer = spec();
    fewer.external_sans.retain(|s| s != "api.acme.example");
    assert!(!serves_exactly(&first.cert, &fewer).unwrap());
    reissue_apiserver(&mut pki, &fewer).unwrap();
    assert!(!covers(&pki.apiserver.cert, "api.acme.example"));
    assert!(covers(&pki.apiserver.cert, "203.0.113.10"));
}

#[test]
fn service_account_keys_pair_and_the_first_service_ip_is_computed() {
    let pki = mint(&spec(), &new_ca("etcd").unwrap()).unwrap();
    let key = KeyPair::from_pem(&pki.service_account_key).unwrap();
    assert_eq!(key.public_key_pem(), pki.service_account_pub);
    assert_eq!(
        first_service_ip(&"10.96.0.0/12".parse().unwrap())
            .unwrap()
            .to_string(),
        "10.96.0.1"
    );
    assert_eq!(
        first_service_ip(&"10.100.7.0/24".parse().unwrap())
            .unwrap()
            .to_string(),
        "10.100.7.1"
    );
    assert_eq!(
        first_service_ip(&"fd00:10:96::/112".parse().unwrap())
            .unwrap()
            .to_string(),
        "fd00:10:96::1"
    );
    assert!(first_service_ip(&"10.96.0.0/32".parse().unwrap()).is_err());
}

#[test]
fn kubeconfigs_embed_the_server_ca_and_credentials() {
    let ca = new_ca("kubernetes").unwrap();
    let admin = sign(
        &ca,
        &Leaf {
            cn: "kubernetes-admin",
            orgs: &["system:masters"],
            sans: &[],
            usage: Usage::Client,
        },
    )
    .unwrap();
    let kc = kubeconfig(
        "acme",
        "https://203.0.113.10:6443",
        &ca.cert,
        "kubernetes-admin",
        &admin,
    );
    assert!(kc.contains("server: https://203.0.113.10:6443"));
    assert!(kc.contains(&format!(
        "certificate-authority-data: {}",
        B64.encode(&ca.cert)
    )));
    assert!(kc.contains(&format!("client-key-data: {}", B64.encode(&admin.key))));
    assert!(kc.contains("current-context: kubernetes-admin@acme"));
}
