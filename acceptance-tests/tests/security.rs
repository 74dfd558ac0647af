//! Hard multi-tenancy on day two, on the real programs: kube-apiserver, kube-controller-manager
//! and kube-scheduler (built from the `k8s.io/kubernetes` module) run by kamajid's process
//! runtime, real etcd shards read with their root certificate, the real terraform (or tofu) CLI
//! and kubectl. The one stand-in is the OpenID Connect issuer ([`acceptance_tests::oidc`]): a
//! small TLS server the apiserver discovers and trusts as it would any identity provider.

use std::path::Path;
use std::time::{Duration, Instant};

use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::oidc::{token_kubeconfig, Issuer};
use acceptance_tests::*;
use kamaji_proto::v1;
use serde_json::{json, Value};

const SECRET: &str = "hunter2-never-in-etcd";

fn tenant_hcl(version: &str, rotation: u32, issuer: &Issuer, network: &str) -> String {
    format!(
        r#"resource "kamaji_tenant_cluster" "vault" {{
  name               = "vault"
  kubernetes_version = "{version}"
  datastore          = kamaji_datastore.a.name
  network {{
{network}  }}
  encryption {{
    resources    = ["configmaps"]
    key_rotation = {rotation}
  }}
  authentication {{
    oidc {{
      issuer_url      = "{url}"
      client_id       = "kamaji"
      username_prefix = "oidc:"
      groups_claim    = "groups"
      groups_prefix   = "oidc:"
      ca_certificate  = <<EOT
{ca}EOT
    }}
  }}
  audit {{
    preset = "metadata"
  }}
}}
"#,
        url = issuer.url,
        ca = issuer.ca_pem,
    )
}

/// The raw value etcd holds for `key`, read with the shard's root certificate.
async fn raw(h: &Harness, endpoint: &str, key: &str) -> Vec<u8> {
    let mut c = h.shard_root(endpoint).await;
    let r = c.get(key, None).await.expect("etcd get");
    r.kvs()
        .first()
        .unwrap_or_else(|| panic!("{key} is not in etcd"))
        .value()
        .to_vec()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn assert_encrypted_with(value: &[u8], key: &str, what: &str) {
    let prefix = format!("k8s:enc:secretbox:v1:{key}:");
    assert!(
        value.starts_with(prefix.as_bytes()),
        "{what} is not stored with {prefix}: {:?}",
        String::from_utf8_lossy(&value[..value.len().min(40)])
    );
    assert!(!contains(value, SECRET), "{what} holds the plaintext");
}

fn secret_value(k: &Kubectl, name: &str) -> String {
    let s = k.json(&["secret", name]);
    let b = s["data"]["password"].as_str().expect("password");
    String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).expect("base64"),
    )
    .expect("utf8")
}

/// `kubectl auth whoami` as the holder of `token`: the user and groups, or kubectl's error.
fn whoami(
    w: &Workdir,
    endpoint: &str,
    ca: &str,
    token: &str,
) -> Result<(String, Vec<String>), String> {
    let k = Kubectl::new(
        &w.dir.join("oidc.kubeconfig"),
        &token_kubeconfig(endpoint, ca, token),
    );
    let r = k.run(&["auth", "whoami", "-o", "json"]);
    if !r.ok {
        return Err(format!("{}{}", r.stdout, r.stderr));
    }
    let v: Value = serde_json::from_str(&r.stdout).expect("whoami json");
    let info = &v["status"]["userInfo"];
    Ok((
        info["username"].as_str().unwrap_or_default().to_owned(),
        info["groups"]
            .as_array()
            .map(|g| {
                g.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    ))
}

async fn tenant(h: &Harness, name: &str) -> v1::TenantCluster {
    h.tenants()
        .await
        .get_tenant_cluster(v1::GetTenantClusterRequest { name: name.into() })
        .await
        .expect("get tenant")
        .into_inner()
}

/// When the first leaf certificate of `tc` expires (unix seconds).
fn expiry(tc: &v1::TenantCluster) -> i64 {
    tc.status
        .as_ref()
        .and_then(|s| s.certificates_expire_at)
        .map_or(0, |t| t.seconds)
}

/// The audit events of `log` (JSON lines) matching `f`.
fn audit_events(log: &Path, f: impl Fn(&Value) -> bool) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| f(e))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_encrypted_at_rest_rotated_audited_and_oidc_users_sign_in() {
    let root = tempfile::tempdir().unwrap();
    let (h, tenants_dir, _) = Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 0).await;
    let _reaper = Reaper(tenants_dir.clone());
    let issuer = Issuer::start("key-a").await;
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    let version = k8s::newest();
    let w = h.workdir("vault");
    let config = |rotation: u32, network: &str| {
        format!(
            "{PROVIDER_HCL}\n{}\n{}",
            ds.render(),
            tenant_hcl(&version, rotation, &issuer, network)
        )
    };
    w.write(&config(0, ""));
    w.must_apply();
    let plan = w.plan_code();
    assert_eq!(
        plan.code,
        0,
        "plan after apply is empty:\n{}",
        plan.output()
    );

    let v = w.resource("kamaji_tenant_cluster.vault")["values"].clone();
    assert_eq!(v["status"], "Ready", "{v:#}");
    assert_eq!(v["encryption_key_rotation"], 0);
    assert!(
        v["certificates_expire_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{v:#}"
    );
    let uid = v["uid"].as_str().unwrap().to_owned();
    let endpoint = v["endpoint"].as_str().unwrap().to_owned();
    let ca = v["cluster_ca_certificate"].as_str().unwrap().to_owned();
    let admin = Kubectl::new(
        &w.dir.join("admin.kubeconfig"),
        v["admin_kubeconfig"].as_str().unwrap(),
    );

    // 1. Secrets (and the listed ConfigMaps) reach the shared etcd encrypted; others do not.
    admin.must(&[
        "create",
        "secret",
        "generic",
        "before",
        &format!("--from-literal=password={SECRET}"),
    ]);
    admin.must(&[
        "create",
        "configmap",
        "settings",
        &format!("--from-literal=password={SECRET}"),
    ]);
    let secret_key = format!("/{uid}/secrets/default/before");
    assert_encrypted_with(
        &raw(&h, &shard.endpoint, &secret_key).await,
        "key-0",
        "the Secret",
    );
    assert_encrypted_with(
        &raw(
            &h,
            &shard.endpoint,
            &format!("/{uid}/configmaps/default/settings"),
        )
        .await,
        "key-0",
        "the ConfigMap",
    );
    let ns = raw(&h, &shard.endpoint, &format!("/{uid}/namespaces/default")).await;
    assert!(
        ns.starts_with(b"k8s\x00"),
        "a Namespace is not listed, so stored plain (protobuf)"
    );

    // 2. The create is in the tenant's audit log, at Metadata: who, what, never the value.
    let log = tenants_dir.join("vault/audit.log");
    let start = Instant::now();
    let created = loop {
        let e = audit_events(&log, |e| {
            e["verb"] == "create"
                && e["objectRef"]["resource"] == "secrets"
                && e["objectRef"]["name"] == "before"
                && e["stage"] == "ResponseComplete"
        });
        if let Some(e) = e.into_iter().next() {
            break e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no audit event in {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(created["level"], "Metadata", "{created:#}");
    assert_eq!(created["user"]["username"], "kubernetes-admin");
    assert_eq!(created["responseStatus"]["code"], 201);
    assert!(!created.to_string().contains(SECRET), "{created:#}");
    assert!(created.get("requestObject").is_none());

    // 3. OIDC: a token of the issuer for this cluster signs in as its mapped user and groups.
    let alice = issuer.token("alice", "kamaji", json!({"groups": ["admins"]}));
    let start = Instant::now();
    let (user, groups) = loop {
        // The authenticator fetches the issuer's keys in the background after a start.
        match whoami(&w, &endpoint, &ca, &alice) {
            Ok(u) => break u,
            Err(e) if start.elapsed() < Duration::from_secs(60) => {
                let _ = e;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("the issuer's token was refused: {e}"),
        }
    };
    assert_eq!(user, "oidc:alice");
    assert!(groups.contains(&"oidc:admins".to_owned()), "{groups:?}");
    assert!(
        groups.contains(&"system:authenticated".to_owned()),
        "{groups:?}"
    );
    // Another audience, or another issuer (its own key, its own URL): refused.
    let other_audience = issuer.token("mallory", "some-other-app", json!({}));
    let e = whoami(&w, &endpoint, &ca, &other_audience).unwrap_err();
    assert!(e.contains("Unauthorized") || e.contains("401"), "{e}");
    let stranger = Issuer::start("key-b").await;
    let forged = stranger.token("alice", "kamaji", json!({"groups": ["admins"]}));
    let e = whoami(&w, &endpoint, &ca, &forged).unwrap_err();
    assert!(e.contains("Unauthorized") || e.contains("401"), "{e}");

    // 4. Key rotation: a new key encrypts, every object is written again with it before the
    //    apply returns, and old and new Secrets read back.
    w.write(&config(1, ""));
    w.must_apply();
    let v = w.resource("kamaji_tenant_cluster.vault")["values"].clone();
    assert_eq!(v["encryption_key_rotation"], 1, "{v:#}");
    assert_eq!(v["status"], "Ready");
    assert_encrypted_with(
        &raw(&h, &shard.endpoint, &secret_key).await,
        "key-1",
        "the old Secret",
    );
    assert_encrypted_with(
        &raw(
            &h,
            &shard.endpoint,
            &format!("/{uid}/configmaps/default/settings"),
        )
        .await,
        "key-1",
        "the old ConfigMap",
    );
    admin.must(&[
        "create",
        "secret",
        "generic",
        "after",
        &format!("--from-literal=password={SECRET}"),
    ]);
    assert_encrypted_with(
        &raw(
            &h,
            &shard.endpoint,
            &format!("/{uid}/secrets/default/after"),
        )
        .await,
        "key-1",
        "the new Secret",
    );
    assert_eq!(secret_value(&admin, "before"), SECRET);
    assert_eq!(secret_value(&admin, "after"), SECRET);
    let plan = w.plan_code();
    assert_eq!(
        plan.code,
        0,
        "plan after the rotation is empty:\n{}",
        plan.output()
    );

    // Keys only move forward; the process runtime cannot fence networks: both refused at plan.
    w.write(&config(0, ""));
    let r = w.plan_code();
    assert_eq!(r.code, 1, "{}", r.output());
    assert!(r.output().contains("only move forward"), "{}", r.output());
    assert!(points_at(&r.output(), "key_rotation"), "{}", r.output());
    w.write(&config(1, "    authorized_networks = [\"10.0.0.0/8\"]\n"));
    let r = w.plan_code();
    assert_eq!(r.code, 1, "{}", r.output());
    assert!(
        r.output().contains("process runtime cannot enforce"),
        "{}",
        r.output()
    );
    w.write(&config(1, "    authorized_networks = [\"10.0.0.1/8\"]\n"));
    let r = w.plan_code();
    assert!(r.output().contains("host bits set"), "{}", r.output());
    assert!(
        points_at(&r.output(), "authorized_networks"),
        "{}",
        r.output()
    );

    // The API reports the same.
    let st = tenant(&h, "vault").await.status.unwrap();
    assert_eq!(st.encryption_key_rotation, 1);
    assert!(st
        .conditions
        .iter()
        .any(|c| c.r#type == "EncryptedAtRest" && c.status == v1::ConditionStatus::True as i32));
}

#[tokio::test(flavor = "multi_thread")]
async fn leaf_certificates_are_renewed_before_they_expire_and_kubeconfigs_follow() {
    let root = tempfile::tempdir().unwrap();
    // Four-minute certificates renewed in their last three minutes: one renewal a minute after
    // creation.
    let (h, tenants_dir, _) = Harness::with_process_runtime_args(
        root.path(),
        &k8s::bin_dir(),
        2,
        vec![
            "--certificate-validity-seconds=240".into(),
            "--certificate-renew-before-seconds=180".into(),
        ],
    )
    .await;
    let _reaper = Reaper(tenants_dir.clone());
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    let w = h.workdir("renew");
    w.write(&format!(
        "{PROVIDER_HCL}\n{}\nresource \"kamaji_tenant_cluster\" \"t\" {{\n  name = \"renew\"\n  kubernetes_version = \"{}\"\n  datastore = kamaji_datastore.a.name\n}}\n",
        ds.render(),
        k8s::newest()
    ));
    w.must_apply();
    let before = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    let expires_before = before["certificates_expire_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_admin = Kubectl::new(
        &w.dir.join("old.kubeconfig"),
        before["admin_kubeconfig"].as_str().unwrap(),
    );
    old_admin.must(&["create", "configmap", "kept"]);

    // kamajid renews once the first certificate is within three minutes of expiry.
    let initial = expiry(&tenant(&h, "renew").await);
    let start = Instant::now();
    loop {
        let tc = tenant(&h, "renew").await;
        let ready = tc
            .status
            .as_ref()
            .is_some_and(|s| s.phase == v1::TenantClusterPhase::Ready as i32);
        if expiry(&tc) > initial && ready {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "not renewed: {tc:#?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // A refresh reads the new expiry and the re-issued admin credentials; nothing to plan.
    let r = w.tf(&["apply", "-refresh-only", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "{}", r.output());
    let after = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    let expires_after = after["certificates_expire_at"].as_str().unwrap();
    assert!(
        expires_after > expires_before.as_str(),
        "{expires_before} -> {expires_after}"
    );
    assert_ne!(
        after["admin_kubeconfig"], before["admin_kubeconfig"],
        "the admin kubeconfig follows"
    );
    assert_eq!(
        after["cluster_ca_certificate"], before["cluster_ca_certificate"],
        "same CA"
    );
    let plan = w.plan_code();
    assert_eq!(plan.code, 0, "{}", plan.output());

    // The new credentials work, and so do the old ones until they expire (same CA): nobody is
    // locked out by a renewal. The data is all there.
    let new_admin = Kubectl::new(
        &w.dir.join("new.kubeconfig"),
        after["admin_kubeconfig"].as_str().unwrap(),
    );
    new_admin.eventually(&["get", "configmap", "kept"], 60);
    old_admin.must(&["get", "configmap", "kept"]);

    // The apiserver serves the renewed certificate.
    let endpoint = after["endpoint"].as_str().unwrap();
    let hostport = endpoint.trim_start_matches("https://");
    let served = openssl(&["s_client", "-connect", hostport, "-showcerts"], b"");
    let served = String::from_utf8_lossy(&served);
    let pem_start = served
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a served certificate");
    let pem_end = served.find("-----END CERTIFICATE-----").expect("pem end") + 25;
    let not_after = kamaji_core::pki::not_after(&served[pem_start..pem_end]).expect("notAfter");
    assert!(
        not_after > initial,
        "the served certificate is the renewed one"
    );
}

/// A kubeconfig of `endpoint` trusting `ca` that signs in with `user` (kubeconfig user lines).
fn kubeconfig_with(endpoint: &str, ca: &str, user: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {endpoint}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n{user}contexts:\n- name: t\n  context:\n    cluster: t\n    user: u\ncurrent-context: t\n",
        base64::Engine::encode(&b64, ca)
    )
}

/// A node's client certificate, as a kubelet's TLS bootstrap gets it: a CSR for
/// `system:node:<name>` signed by the controller-manager's signer once approved.
async fn node_credentials(admin: &Kubectl, dir: &Path, name: &str) -> (Vec<u8>, Vec<u8>) {
    let key = openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ],
        b"",
    );
    let key_path = dir.join(format!("{name}.key"));
    write_private(&key_path, &String::from_utf8_lossy(&key));
    let csr = openssl(
        &[
            "req",
            "-new",
            "-key",
            key_path.to_str().unwrap(),
            "-subj",
            &format!("/O=system:nodes/CN=system:node:{name}"),
        ],
        b"",
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    admin.apply(&format!(
        r#"{{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest",
"metadata":{{"name":"csr-{name}"}},
"spec":{{"request":"{}","signerName":"kubernetes.io/kube-apiserver-client-kubelet",
"usages":["digital signature","client auth"]}}}}"#,
        base64::Engine::encode(&b64, &csr)
    ));
    admin.must(&["certificate", "approve", &format!("csr-{name}")]);
    let start = Instant::now();
    loop {
        let c = admin.json(&["csr", &format!("csr-{name}")]);
        if let Some(cert) = c["status"]["certificate"]
            .as_str()
            .filter(|c| !c.is_empty())
        {
            return (base64::Engine::decode(&b64, cert).unwrap(), key);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "CSR not signed: {c:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Who `kubeconfig` signs in as, or kubectl's error.
fn signs_in_as(w: &Workdir, file: &str, kubeconfig: &str) -> Result<String, String> {
    let k = Kubectl::new(&w.dir.join(file), kubeconfig);
    let r = k.run(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    if r.ok {
        Ok(r.stdout)
    } else {
        Err(format!("{}{}", r.stdout, r.stderr))
    }
}

fn pem_count(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ca_and_service_account_key_rotate_in_two_phases_without_cutting_anyone_off_early() {
    let root = tempfile::tempdir().unwrap();
    let (h, tenants_dir, _) = Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 1).await;
    let _reaper = Reaper(tenants_dir.clone());
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    let w = h.workdir("rotate");
    let config = |rotation: &str| {
        format!(
            "{PROVIDER_HCL}\n{}\nresource \"kamaji_tenant_cluster\" \"t\" {{\n  name = \"rotate\"\n  kubernetes_version = \"{}\"\n  datastore = kamaji_datastore.a.name\n{rotation}}}\n",
            ds.render(),
            k8s::newest()
        )
    };
    let rotation = |generation: u32, phase: &str| {
        format!("  credential_rotation {{\n    generation = {generation}\n    phase = \"{phase}\"\n  }}\n")
    };
    w.write(&config(""));
    w.must_apply();
    let v0 = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    let endpoint = v0["endpoint"].as_str().unwrap().to_owned();
    let old_ca = v0["cluster_ca_certificate"].as_str().unwrap().to_owned();
    let old_admin = v0["admin_kubeconfig"].as_str().unwrap().to_owned();
    let admin = Kubectl::new(&w.dir.join("admin0.kubeconfig"), &old_admin);
    // Credentials issued before the rotation: a service-account token and a node certificate.
    admin.must(&["create", "serviceaccount", "robot"]);
    let old_token = admin
        .must(&["create", "token", "robot", "--duration=1h"])
        .trim()
        .to_owned();
    let (node_cert, node_key) = node_credentials(&admin, &w.dir, "worker-1").await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let node_user = format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        base64::Engine::encode(&b64, &node_cert),
        base64::Engine::encode(&b64, &node_key)
    );
    let token_user = |t: &str| format!("    token: {t}\n");

    // Phase one: started. The apply returns with the new credentials in state...
    w.write(&config(&rotation(1, "started")));
    w.must_apply();
    let v1 = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    let bundle = v1["cluster_ca_certificate"].as_str().unwrap().to_owned();
    assert_eq!(pem_count(&bundle), 2, "both CAs are trusted: {bundle}");
    assert!(bundle.ends_with(&old_ca), "the old CA after the new one");
    assert_ne!(
        v1["ca_cert_hash"], v0["ca_cert_hash"],
        "the join hash is the new CA's"
    );
    let new_admin = v1["admin_kubeconfig"].as_str().unwrap().to_owned();
    assert_ne!(new_admin, old_admin);
    assert_eq!(
        signs_in_as(&w, "new.kubeconfig", &new_admin).unwrap(),
        "kubernetes-admin"
    );
    // ...and everything issued before keeps working, with what its holder already had.
    assert_eq!(
        signs_in_as(&w, "old.kubeconfig", &old_admin).unwrap(),
        "kubernetes-admin",
        "the old admin kubeconfig (old CA only) works through phase one"
    );
    assert_eq!(
        signs_in_as(
            &w,
            "token.kubeconfig",
            &kubeconfig_with(&endpoint, &old_ca, &token_user(&old_token))
        )
        .unwrap(),
        "system:serviceaccount:default:robot",
        "a token signed with the old key verifies"
    );
    assert_eq!(
        signs_in_as(
            &w,
            "node.kubeconfig",
            &kubeconfig_with(&endpoint, &old_ca, &node_user)
        )
        .unwrap(),
        "system:node:worker-1",
        "a node certificate of the old CA is accepted"
    );
    // New tokens are signed with the new key.
    let new_admin_k = Kubectl::new(&w.dir.join("admin1.kubeconfig"), &new_admin);
    let new_token = new_admin_k
        .must(&["create", "token", "robot", "--duration=1h"])
        .trim()
        .to_owned();
    let plan = w.plan_code();
    assert_eq!(
        plan.code,
        0,
        "plan after phase one is empty:\n{}",
        plan.output()
    );

    // Out of order: another rotation before this one completes, or going back.
    w.write(&config(&rotation(2, "started")));
    let r = w.plan_code();
    assert!(
        r.code == 1 && r.output().contains("still started"),
        "{}",
        r.output()
    );
    assert!(points_at(&r.output(), "generation"), "{}", r.output());
    w.write(&config(&rotation(0, "completed")));
    let r = w.plan_code();
    assert!(
        r.code == 1 && r.output().contains("only move forward"),
        "{}",
        r.output()
    );

    // Phase two: completed. The old CA and key are withdrawn.
    w.write(&config(&rotation(1, "completed")));
    w.must_apply();
    let v2 = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    let new_ca = v2["cluster_ca_certificate"].as_str().unwrap().to_owned();
    assert_eq!(pem_count(&new_ca), 1);
    assert!(bundle.starts_with(&new_ca), "the new CA stays");
    let admin2 = v2["admin_kubeconfig"].as_str().unwrap().to_owned();
    assert_eq!(
        signs_in_as(&w, "new2.kubeconfig", &admin2).unwrap(),
        "kubernetes-admin"
    );
    assert_eq!(
        signs_in_as(
            &w,
            "token2.kubeconfig",
            &kubeconfig_with(&endpoint, &new_ca, &token_user(&new_token))
        )
        .unwrap(),
        "system:serviceaccount:default:robot",
        "a token of the new key still verifies"
    );
    // What the old CA and key signed is refused now, even by a client that trusts the new CA.
    let refused = |what: &str, r: Result<String, String>| {
        let e = r.expect_err(what);
        assert!(
            e.contains("Unauthorized") || e.contains("certificate"),
            "{what}: {e}"
        );
    };
    refused(
        "the old admin kubeconfig",
        signs_in_as(&w, "old2.kubeconfig", &old_admin),
    );
    refused(
        "the old admin certificate",
        signs_in_as(
            &w,
            "old3.kubeconfig",
            &kubeconfig_with(
                &endpoint,
                &new_ca,
                &format!(
                    "    client-certificate-data: {}\n    client-key-data: {}\n",
                    base64::Engine::encode(&b64, v0["client_certificate"].as_str().unwrap()),
                    base64::Engine::encode(&b64, signs_key(&old_admin)),
                ),
            ),
        ),
    );
    refused(
        "the old token",
        signs_in_as(
            &w,
            "token3.kubeconfig",
            &kubeconfig_with(&endpoint, &new_ca, &token_user(&old_token)),
        ),
    );
    refused(
        "the old node certificate",
        signs_in_as(
            &w,
            "node2.kubeconfig",
            &kubeconfig_with(&endpoint, &new_ca, &node_user),
        ),
    );
    let plan = w.plan_code();
    assert_eq!(
        plan.code,
        0,
        "plan after phase two is empty:\n{}",
        plan.output()
    );
}

/// The client key inside a kubeconfig (`client-key-data`), decoded.
fn signs_key(kubeconfig: &str) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let line = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-key-data:"))
        .expect("client-key-data");
    base64::Engine::decode(&b64, line.trim()).expect("base64")
}
