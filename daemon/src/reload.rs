//! Files kamajid re-reads while it runs, so that rotating them (a Secret update) needs no
//! restart: the API's TLS certificate and key, and the tokens file.
//!
//! - The TLS identity is chosen per handshake ([`ServingIdentity`] resolves it), so a new
//!   certificate serves new connections at once and established ones keep theirs.
//! - The files are polled every [`POLL`], by content: a kubelet updates a Secret volume by
//!   swapping a `..data` symlink, which a watch of the files themselves would miss.
//! - A file that changes into something that does not load (a half-written pair, a key that is
//!   not the certificate's) is logged and the old value kept: a bad rotation never leaves the
//!   API without a certificate or without tokens.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{error, info};

use crate::api::auth::Tokens;

/// How often the files are read again.
pub const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("{path}: the private key's type is not supported: {detail}")]
    KeyType { path: PathBuf, detail: String },
    #[error("the private key in {key} is not the key of the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|source| IdentityError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The certificate chain in `cert` and its key in `key`, checked to belong together.
pub fn load_identity(cert: &Path, key: &Path) -> Result<CertifiedKey, IdentityError> {
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(IdentityError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| IdentityError::NoKey {
        path: key.to_owned(),
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private).map_err(|e| {
        IdentityError::KeyType {
            path: key.to_owned(),
            detail: e.to_string(),
        }
    })?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|_| IdentityError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        })?;
    Ok(certified)
}

/// The API's serving certificate, swapped in place when its files change.
#[derive(Debug)]
pub struct ServingIdentity {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServingIdentity {
    pub fn new(key: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(key)),
        }
    }

    fn set(&self, key: CertifiedKey) {
        let key = Arc::new(key);
        match self.current.write() {
            Ok(mut c) => *c = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }

    /// A rustls server configuration that serves this identity (whatever it is at each
    /// handshake) over HTTP/2, as gRPC needs.
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        config
    }
}

impl ResolvesServerCert for ServingIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match self.current.read() {
            Ok(c) => Some(c.clone()),
            Err(poisoned) => Some(poisoned.into_inner().clone()),
        }
    }
}

/// What [`run`] keeps current.
pub struct Watched {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub identity: Arc<ServingIdentity>,
    pub tokens_file: PathBuf,
    pub tokens: Tokens,
}

/// Waits for the next poll: false once kamajid shuts down.
async fn next_poll(shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(POLL) => {}
        _ = shutdown.changed() => return false,
    }
    !*shutdown.borrow()
}

/// The digest of what `paths` hold now (a file that cannot be read counts as empty: it is
/// then reported by the load that follows a change).
fn fingerprint(paths: &[&Path]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in paths {
        h.update(std::fs::read(p).unwrap_or_default());
        h.update([0]);
    }
    h.finalize().into()
}

/// Re-reads the watched files every [`POLL`] until `shutdown`, swapping in what changed and
/// loads.
pub async fn run(w: Watched, mut shutdown: watch::Receiver<bool>) {
    let mut identity_seen = fingerprint(&[&w.cert, &w.key]);
    let mut tokens_seen = fingerprint(&[&w.tokens_file]);
    while next_poll(&mut shutdown).await {
        let now = fingerprint(&[&w.cert, &w.key]);
        if now != identity_seen {
            identity_seen = now;
            match load_identity(&w.cert, &w.key) {
                Ok(key) => {
                    w.identity.set(key);
                    info!(cert = %w.cert.display(), "serving certificate reloaded; new connections get it");
                }
                Err(e) => {
                    error!(error = %e, "the serving certificate changed but does not load; still serving the previous one")
                }
            }
        }
        let now = fingerprint(&[&w.tokens_file]);
        if now != tokens_seen {
            tokens_seen = now;
            match Tokens::load(&w.tokens_file) {
                Ok(fresh) => {
                    w.tokens.replace(&fresh);
                    info!(file = %w.tokens_file.display(), accepted = fresh.len(), "tokens reloaded");
                }
                Err(e) => {
                    error!(error = %e, "the tokens file changed but does not load; still accepting the previous tokens")
                }
            }
        }
    }
}

/// TLS connections accepted on `listener`, each handshake on its own task (a slow client holds
/// up no other), until `shutdown`.
pub fn incoming(
    listener: tokio::net::TcpListener,
    config: rustls::ServerConfig,
    metrics: Arc<crate::metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<
    Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::io::Error>,
> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.changed() => return,
            };
            let (tcp, peer) = match tcp {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (acceptor, tx, metrics) = (acceptor.clone(), tx.clone(), metrics.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        metrics.connection_accepted();
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        let (cp, kp) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cp, c.pem()).unwrap();
        std::fs::write(&kp, k.serialize_pem()).unwrap();
        (cp, kp)
    }

    #[test]
    fn a_pair_loads_and_a_key_of_another_certificate_is_refused_by_name() {
        crate::server::install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let (a_crt, a_key) = pair(dir.path(), "a");
        let (_, b_key) = pair(dir.path(), "b");
        assert!(load_identity(&a_crt, &a_key).is_ok());
        let e = load_identity(&a_crt, &b_key).unwrap_err();
        assert!(matches!(e, IdentityError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains("b.key"), "{e}");
        let e = load_identity(&a_key, &a_key).unwrap_err();
        assert!(matches!(e, IdentityError::NoCertificate { .. }), "{e}");
    }
}

/// The sealed values of kamaji's records: where each is bound (its associated data) and the
/// value, for the datastores and tenants given.
fn sealed_values<'a>(
    datastores: &'a [kamaji_core::datastore::DatastoreRecord],
    tenants: &'a [kamaji_core::tenant::TenantRecord],
) -> Vec<(String, &'a str)> {
    let mut out = Vec::new();
    for d in datastores {
        let aad = kamaji_core::kek::datastore_aad(&d.name);
        out.push((aad.clone(), d.client_key_sealed.as_str()));
        out.push((aad, d.client_ca_key_sealed.as_str()));
    }
    for t in tenants {
        if let Some(p) = &t.pki {
            out.push((kamaji_core::kek::tenant_aad(&t.name), p.sealed.as_str()));
        }
    }
    out
}

/// Why a changed KEK file is not taken.
#[derive(Debug, thiserror::Error)]
pub enum KekReloadError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Format {
        path: PathBuf,
        source: kamaji_core::kek::KekError,
    },
    #[error("{path} cannot open {count} sealed value(s) kamajid holds (the first: {first}); keep the key that sealed them in the file, after the new one, until kamajid has re-sealed them")]
    WouldLose {
        path: PathBuf,
        count: usize,
        first: String,
    },
    #[error("reading kamajid's records: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// The keys in `path`, checked to open every sealed value in the records.
async fn load_kek(
    store: &crate::store::Store,
    path: &Path,
) -> Result<kamaji_core::kek::Kek, KekReloadError> {
    let text = std::fs::read_to_string(path).map_err(|source| KekReloadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let fresh =
        kamaji_core::kek::Kek::from_encoded(&text).map_err(|source| KekReloadError::Format {
            path: path.to_owned(),
            source,
        })?;
    let datastores: Vec<_> = store
        .datastore_records()
        .await?
        .into_iter()
        .map(|v| v.value)
        .collect();
    let tenants = store.tenant_records_sealed().await?;
    let lost: Vec<String> = sealed_values(&datastores, &tenants)
        .into_iter()
        .filter(|(aad, sealed)| fresh.open(aad, sealed).is_err())
        .map(|(aad, _)| aad)
        .collect();
    match lost.first() {
        None => Ok(fresh),
        Some(first) => Err(KekReloadError::WouldLose {
            path: path.to_owned(),
            count: lost.len(),
            first: first.clone(),
        }),
    }
}

/// Re-seals, with the sealing key, every value an older key sealed; how many are left (a
/// record changed meanwhile is done on the next pass).
async fn reseal(
    store: &crate::store::Store,
    kek: &kamaji_core::kek::Kek,
) -> Result<(usize, usize), crate::store::StoreError> {
    let (mut done, mut left) = (0, 0);
    for v in store.datastore_records().await? {
        let mut d = v.value;
        let aad = kamaji_core::kek::datastore_aad(&d.name);
        let mut changed = false;
        for field in [&mut d.client_key_sealed, &mut d.client_ca_key_sealed] {
            if kek.sealed_by_older_key(&aad, field) {
                if let Ok(s) = kek.reseal(&aad, field) {
                    *field = s;
                    changed = true;
                }
            }
        }
        if changed {
            match store.update_datastore(&d, v.revision).await {
                Ok(()) => done += 1,
                Err(_) => left += 1,
            }
        }
    }
    for t in store.tenant_records_sealed().await? {
        let aad = kamaji_core::kek::tenant_aad(&t.name);
        if !t
            .pki
            .as_ref()
            .is_some_and(|p| kek.sealed_by_older_key(&aad, &p.sealed))
        {
            continue;
        }
        // Read again with its revision: the lifecycle may be writing it.
        let Some(v) = store.tenant_record(&t.name).await? else {
            continue;
        };
        let mut rec = v.value;
        let Some(p) = rec.pki.as_mut() else { continue };
        match kek.reseal(&aad, &p.sealed) {
            Ok(s) => p.sealed = s,
            Err(_) => {
                left += 1;
                continue;
            }
        }
        match store.update_tenant_record(&rec, v.revision).await {
            Ok(()) => done += 1,
            Err(_) => left += 1,
        }
    }
    Ok((done, left))
}

/// Keeps the KEK current: a changed file is taken once it opens every sealed value kamajid
/// holds (else logged and the old keys kept); on the leader, what older keys sealed is then
/// re-sealed with the new first key, so the older ones can leave the file.
pub async fn run_kek(
    store: crate::store::Store,
    kek: kamaji_core::kek::Kek,
    path: PathBuf,
    leading: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut seen = fingerprint(&[&path]);
    // A restart after a rotation finishes its re-seal.
    let mut pending = kek.ids().len() > 1;
    while next_poll(&mut shutdown).await {
        let now = fingerprint(&[&path]);
        if now != seen {
            seen = now;
            match load_kek(&store, &path).await {
                Ok(fresh) => {
                    kek.replace(&fresh);
                    info!(keys = ?kek.ids(), "key-encryption keys reloaded; the first seals");
                    pending = true;
                }
                Err(e) => {
                    error!(error = %e, "the key-encryption key file changed but is not taken; still using the previous keys")
                }
            }
        }
        if pending && *leading.borrow() {
            match reseal(&store, &kek).await {
                Ok((done, 0)) => {
                    pending = false;
                    if done > 0 || kek.ids().len() > 1 {
                        info!(records = done, key = ?kek.ids().first(), "re-sealed with the first key-encryption key; older keys may leave the file");
                    }
                }
                Ok((done, left)) => {
                    info!(
                        records = done,
                        left, "re-sealing with the first key-encryption key"
                    )
                }
                Err(e) => tracing::warn!(error = %e, "re-sealing with the new key-encryption key"),
            }
        }
    }
}
