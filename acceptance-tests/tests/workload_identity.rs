//! Workload identity on the real programs: terraform, a real etcd shard, a real control plane
//! (the newest version built from the `k8s.io/kubernetes` module, run by kamajid's process
//! runtime) and a standard JWT library (`jsonwebtoken`). With `public_issuer`, a projected
//! service-account token the tenant's apiserver signs verifies against the discovery document
//! and key set kamajid serves, as a cloud's IAM or Vault would verify it; tokens issued before
//! it was turned on are still accepted by the apiserver.

use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};

const BASE: &str = "https://oidc.test.example/tenants";

#[derive(Debug, serde::Deserialize)]
struct Claims {
    iss: String,
    sub: String,
}

fn get_json(url: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = http_get(url, None);
    (status, serde_json::from_str(&body).unwrap_or_default())
}

/// Whether the tenant's apiserver accepts `token` (a TokenReview by its admin).
fn accepted(admin: &Kubectl, token: &str) -> bool {
    let review = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    });
    let out = admin.must_with(&["create", "-o", "json", "-f", "-"], &review.to_string());
    let v: serde_json::Value = serde_json::from_str(&out).expect("a TokenReview");
    v["status"]["authenticated"] == true
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_issuer_publishes_keys_that_verify_the_tenants_service_account_tokens() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let (h, tenants_dir, _) = Harness::with_process_runtime_args(
        root.path(),
        &k8s::bin_dir(),
        0,
        vec![
            format!("--service-account-issuer-base-url={BASE}/"),
            format!("--issuer-listen=127.0.0.1:{port}"),
        ],
    )
    .await;
    let _reaper = Reaper(tenants_dir);
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    let version = k8s::newest();
    let hcl = |public: bool| {
        format!(
            r#"{PROVIDER_HCL}
{}
resource "kamaji_tenant_cluster" "t" {{
  name               = "wi"
  kubernetes_version = "{version}"
  datastore          = kamaji_datastore.a.name
  public_issuer      = {public}
  network {{}}
}}
"#,
            ds.render()
        )
    };
    let w = h.workdir("workload-identity");
    w.write(&hcl(false));
    w.must_apply();
    let before = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    assert_eq!(
        before["service_account_issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    let uid = before["uid"].as_str().unwrap().to_owned();
    let admin = Kubectl::new(
        &w.dir.join("admin.kubeconfig"),
        before["admin_kubeconfig"].as_str().unwrap(),
    );
    let discovery_url = format!("http://127.0.0.1:{port}/{uid}/.well-known/openid-configuration");
    assert_eq!(
        get_json(&discovery_url).0,
        404,
        "published before it was asked"
    );
    let old_token = admin.eventually(&["create", "token", "default"], 60);
    let old_token = old_token.trim().to_owned();
    assert!(accepted(&admin, &old_token));

    // Turned on in place.
    w.write(&hcl(true));
    w.must_apply();
    let after = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    let issuer = format!("{BASE}/{uid}");
    assert_eq!(after["service_account_issuer"], issuer.as_str());
    assert_eq!(after["endpoint"], before["endpoint"]);
    assert_eq!(w.plan_code().code, 0, "no diff after turning it on");

    let (status, doc) = get_json(&discovery_url);
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["issuer"], issuer.as_str());
    assert_eq!(doc["jwks_uri"], format!("{issuer}/openid/v1/jwks").as_str());
    let (status, keys) = get_json(&format!("http://127.0.0.1:{port}/{uid}/openid/v1/jwks"));
    assert_eq!(status, 200, "{keys}");
    let keys: JwkSet = serde_json::from_value(keys).expect("a JWK set");
    let (status, _) = get_json(&format!(
        "http://127.0.0.1:{port}/nobody-1a2b3/openid/v1/jwks"
    ));
    assert_eq!(status, 404);

    // A token for an outside audience verifies with the published key, as an IAM would do it.
    let token = admin.eventually(
        &["create", "token", "default", "--audience=sts.example.com"],
        60,
    );
    let token = token.trim();
    let kid = decode_header(token).unwrap().kid.expect("a key id");
    let jwk = keys.find(&kid).expect("the token's key is published");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&["sts.example.com"]);
    v.set_issuer(&[issuer.as_str()]);
    let claims = decode::<Claims>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("the token verifies against the published key set")
        .claims;
    assert_eq!(claims.iss, issuer);
    assert_eq!(claims.sub, "system:serviceaccount:default:default");
    // A token whose signature was altered does not.
    let (head, sig) = token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{head}.{flipped}{}", &sig[1..]);
    assert!(decode::<Claims>(&forged, &DecodingKey::from_jwk(jwk).unwrap(), &v).is_err());

    // The apiserver accepts both its new tokens and those from before the change.
    let fresh = admin.must(&["create", "token", "default"]);
    assert!(accepted(&admin, fresh.trim()));
    assert!(
        accepted(&admin, &old_token),
        "a token from before was cut off"
    );
}
