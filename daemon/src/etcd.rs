//! Connecting to etcd, shared by the state store, datastore probes, isolation and the dev
//! environment.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

/// TLS material for an etcd connection. `None` everywhere means plain http.
#[derive(Clone, Default)]
pub struct EtcdTls {
    pub ca_pem: Option<String>,
    /// Client certificate and key; etcd takes the certificate's CN as the user.
    pub identity: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca", &self.ca_pem.is_some())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

/// Connects with a per-request timeout so that no call on a dead cluster hangs.
pub async fn connect(
    endpoints: &[String],
    tls: &EtcdTls,
    timeout: Duration,
) -> Result<Client, etcd_client::Error> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout);
    if tls.ca_pem.is_some()
        || tls.identity.is_some()
        || endpoints.iter().any(|e| e.starts_with("https://"))
    {
        let mut t = TlsOptions::new();
        if let Some(ca) = &tls.ca_pem {
            t = t.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &tls.identity {
            t = t.identity(Identity::from_pem(cert, key));
        }
        opts = opts.with_tls(t);
    }
    Client::connect(endpoints, Some(opts)).await
}

/// The whole cause chain of an error on one line: transport errors hide the useful part
/// ("invalid peer certificate: UnknownIssuer") several sources deep.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}
