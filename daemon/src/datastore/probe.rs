//! Checking an etcd cluster before it may hold tenants, and again on every health tick.
//!
//! A datastore is accepted only if, with the credentials given: it answers; its server
//! certificate is signed by the given CA; it refuses clients without a certificate
//! (`--client-cert-auth`); auth is enabled (so per-tenant users and roles mean something); and
//! the client certificate's CN is a root user (kamajid creates users and roles). Each failure
//! names the attribute at fault and says how to fix it.

use std::future::Future;
use std::time::Duration;

use etcd_client::Client;

use kamaji_core::datastore::{AdminCredentials, Member, Phase};
use kamaji_core::pki::Pem;

use crate::etcd::{connect, error_chain, EtcdTls};

/// What a successful probe learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    pub etcd_version: String,
    /// What the operator should know although the datastore is accepted (an etcd release out of
    /// support, or one with a known bypass accepted with `--allow-vulnerable-etcd`).
    pub warnings: Vec<String>,
    pub db_size_bytes: i64,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("cannot reach etcd at {endpoints}: {detail}")]
    Unreachable { endpoints: String, detail: String },
    #[error("the etcd server's certificate is not trusted by ca_certificate ({detail})")]
    UntrustedServer { detail: String },
    #[error("etcd refused the client certificate; it must be signed by a CA in etcd's --trusted-ca-file ({detail})")]
    CertificateRejected { detail: String },
    #[error("etcd accepts clients that present no certificate; run it with --client-cert-auth and --trusted-ca-file so tenants can be authenticated by certificate")]
    NoClientCertAuth,
    #[error("etcd has authentication disabled; enable it (etcdctl user add root --no-password; etcdctl auth enable) so each tenant can be fenced by its own user and role")]
    AuthDisabled,
    #[error("the client certificate's CN {cn:?} is not an etcd root user ({detail}); kamajid needs root to create tenant users and roles")]
    NotRoot { cn: String, detail: String },
    #[error("etcd does not trust client_ca_certificate: a certificate it signed was refused ({detail}); give the CA in etcd's --trusted-ca-file, which signs tenants' etcd certificates")]
    ClientCaUntrusted { detail: String },
    #[error("client_ca_key cannot sign with client_ca_certificate: {detail}")]
    ClientCaUnusable { detail: String },
    #[error("{detail}: upgrade etcd (kamajid refuses releases whose auth checks a tenant can get around; --allow-vulnerable-etcd accepts them with a warning)")]
    Vulnerable { detail: String },
}

impl ProbeError {
    /// The attribute a user has to change.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Unreachable { .. }
            | Self::NoClientCertAuth
            | Self::AuthDisabled
            | Self::Vulnerable { .. } => "endpoints",
            Self::UntrustedServer { .. } => "ca_certificate",
            Self::CertificateRejected { .. } | Self::NotRoot { .. } => "client_certificate",
            Self::ClientCaUntrusted { .. } => "client_ca_certificate",
            Self::ClientCaUnusable { .. } => "client_ca_key",
        }
    }

    pub fn phase(&self) -> Phase {
        match self {
            Self::Unreachable { .. } => Phase::Unreachable,
            _ => Phase::Insecure,
        }
    }
}

/// Probes a datastore. A trait so the API and the health loop do not care how.
pub trait Prober: Send + Sync + 'static {
    fn probe(
        &self,
        creds: &AdminCredentials,
    ) -> impl Future<Output = Result<ProbeReport, ProbeError>> + Send;

    /// Proves at registration that etcd trusts the client CA tenants' certificates will be
    /// signed by: a throwaway certificate from it must get through etcd's TLS. (Which user it
    /// names does not matter: none exists, and etcd refuses it only after the handshake.)
    fn prove_client_ca(
        &self,
        creds: &AdminCredentials,
        client_ca: &Pem,
    ) -> impl Future<Output = Result<(), ProbeError>> + Send;
}

/// Probes real etcd clusters.
#[derive(Debug, Clone)]
pub struct EtcdProber {
    pub timeout: Duration,
    /// Accept etcd releases with a known auth bypass, with a warning in the status.
    pub allow_vulnerable: bool,
}

/// Refuses an etcd release whose auth checks a tenant can get around (unless allowed), and says
/// what else is known against it.
pub fn check_release(version: &str, allow_vulnerable: bool) -> Result<Vec<String>, ProbeError> {
    use kamaji_core::etcd_release::{advisories, describe};
    let found = advisories(version);
    let (breaking, other): (Vec<_>, Vec<_>) = found.iter().partition(|a| a.breaks_isolation);
    if !breaking.is_empty() && !allow_vulnerable {
        return Err(ProbeError::Vulnerable {
            detail: describe(version, &breaking),
        });
    }
    let mut warnings: Vec<String> = Vec::new();
    if !breaking.is_empty() {
        warnings.push(format!(
            "accepted with --allow-vulnerable-etcd: {}",
            describe(version, &breaking)
        ));
    }
    if !other.is_empty() {
        warnings.push(describe(version, &other));
    }
    Ok(warnings)
}

/// Sorts a failed call into the reason a user can act on. `tcp_open` says whether a TCP
/// connection to an endpoint succeeds: with TLS 1.3 a server that rejects our client
/// certificate just closes the connection, so "closed after connecting" means "rejected".
fn classify(endpoints: &[String], err: &etcd_client::Error, tcp_open: bool) -> ProbeError {
    let detail = error_chain(err);
    let d = detail.to_ascii_lowercase();
    if d.contains("unknownissuer")
        || d.contains("invalid peer certificate")
        || d.contains("notvalidforname")
    {
        ProbeError::UntrustedServer { detail }
    } else if tcp_open
        && [
            "certificaterequired",
            "badcertificate",
            "unknownca",
            "certificate required",
            "bad certificate",
            "unknown ca",
            "connection closed",
            "canceled",
            "connection reset",
            "broken pipe",
        ]
        .iter()
        .any(|n| d.contains(n))
    {
        ProbeError::CertificateRejected { detail }
    } else {
        ProbeError::Unreachable {
            endpoints: endpoints.join(","),
            detail,
        }
    }
}

/// Whether any endpoint accepts a TCP connection within `timeout`.
async fn tcp_open(endpoints: &[String], timeout: Duration) -> bool {
    for e in endpoints {
        let Some(hostport) = e.split("://").nth(1).map(|r| r.trim_end_matches('/')) else {
            continue;
        };
        if let Ok(Ok(_)) =
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(hostport)).await
        {
            return true;
        }
    }
    false
}

impl EtcdProber {
    async fn admin_client(&self, creds: &AdminCredentials) -> Result<Client, ProbeError> {
        let tls = EtcdTls {
            ca_pem: Some(creds.ca_certificate.clone()),
            identity: Some((creds.client_certificate.clone(), creds.client_key.clone())),
        };
        connect(&creds.endpoints, &tls, self.timeout)
            .await
            .map_err(|e| classify(&creds.endpoints, &e, false))
    }

    async fn fail(&self, creds: &AdminCredentials, e: &etcd_client::Error) -> ProbeError {
        classify(
            &creds.endpoints,
            e,
            tcp_open(&creds.endpoints, self.timeout).await,
        )
    }

    /// Without a client certificate, a secured etcd must refuse even a status call.
    async fn accepts_anonymous(&self, creds: &AdminCredentials) -> bool {
        let tls = EtcdTls {
            ca_pem: Some(creds.ca_certificate.clone()),
            identity: None,
        };
        match connect(&creds.endpoints, &tls, self.timeout).await {
            Ok(mut c) => c.status().await.is_ok(),
            Err(_) => false,
        }
    }

    async fn run(&self, creds: &AdminCredentials) -> Result<ProbeReport, ProbeError> {
        let mut client = self.admin_client(creds).await?;
        let status = match client.status().await {
            Ok(s) => s,
            Err(e) => return Err(self.fail(creds, &e).await),
        };

        if self.accepts_anonymous(creds).await {
            return Err(ProbeError::NoClientCertAuth);
        }
        // Authenticate is answered with "authentication is not enabled" only when auth is off.
        if let Err(e) = client
            .auth_client()
            .authenticate("kamajid-auth-probe".into(), "-".into())
            .await
        {
            if error_chain(&e).contains("authentication is not enabled") {
                return Err(ProbeError::AuthDisabled);
            }
        }
        // Listing users needs the root role.
        if let Err(e) = client.user_list().await {
            let cn =
                kamaji_proto::validate::common_name(&creds.client_certificate).unwrap_or_default();
            // The connection already worked: a refusal now is about who we are.
            return Err(ProbeError::NotRoot {
                cn,
                detail: error_chain(&e),
            });
        }
        let warnings = check_release(status.version(), self.allow_vulnerable)?;
        let members = match client.member_list().await {
            Ok(m) => m,
            Err(e) => return Err(self.fail(creds, &e).await),
        };
        Ok(ProbeReport {
            etcd_version: status.version().to_owned(),
            warnings,
            db_size_bytes: status.db_size(),
            members: members
                .members()
                .iter()
                .map(|m| Member {
                    name: m.name().to_owned(),
                    id: m.id(),
                    client_urls: m.client_urls().to_vec(),
                    is_learner: m.is_learner(),
                })
                .collect(),
        })
    }
}

impl Prober for EtcdProber {
    async fn prove_client_ca(
        &self,
        creds: &AdminCredentials,
        client_ca: &Pem,
    ) -> Result<(), ProbeError> {
        let probe =
            kamaji_core::pki::issue(client_ca, "kamajid-client-ca-probe", &[]).map_err(|e| {
                ProbeError::ClientCaUnusable {
                    detail: e.to_string(),
                }
            })?;
        let tls = EtcdTls {
            ca_pem: Some(creds.ca_certificate.clone()),
            identity: Some((probe.cert, probe.key)),
        };
        let call = async {
            let mut c = connect(&creds.endpoints, &tls, self.timeout).await?;
            c.status().await.map(|_| ())
        };
        match tokio::time::timeout(self.timeout * 2, call).await {
            Ok(Ok(())) => Ok(()),
            Err(_) => Err(ProbeError::Unreachable {
                endpoints: creds.endpoints.join(","),
                detail: format!("no answer within {:?}", self.timeout * 2),
            }),
            Ok(Err(e)) => {
                let d = error_chain(&e);
                // Past the handshake etcd can only say the user is unknown: the CA is trusted.
                if ["user name not found", "permission denied"]
                    .iter()
                    .any(|n| d.contains(n))
                {
                    return Ok(());
                }
                match self.fail(creds, &e).await {
                    ProbeError::CertificateRejected { detail } => {
                        Err(ProbeError::ClientCaUntrusted { detail })
                    }
                    other => Err(other),
                }
            }
        }
    }

    async fn probe(&self, creds: &AdminCredentials) -> Result<ProbeReport, ProbeError> {
        // Bound the whole probe: several calls, each already bounded by the client timeout.
        match tokio::time::timeout(self.timeout * 4, self.run(creds)).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Unreachable {
                endpoints: creds.endpoints.join(","),
                detail: format!("no answer within {:?}", self.timeout * 4),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_with_an_auth_bypass_is_refused_unless_allowed_and_then_warned_about() {
        let e = check_release("3.4.23", false).unwrap_err();
        assert_eq!(e.field(), "endpoints");
        assert_eq!(e.phase(), Phase::Insecure);
        let msg = e.to_string();
        assert!(
            msg.contains("etcd 3.4.23")
                && msg.contains("CVE-2023-32082")
                && msg.contains("3.4.26 and 3.5.9")
                && msg.contains("--allow-vulnerable-etcd"),
            "{msg}"
        );
        let w = check_release("3.4.23", true).unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("accepted with --allow-vulnerable-etcd"),
            "{w:?}"
        );
        assert!(
            w[1].contains("compaction-without-permission") && w[1].contains("out-of-support"),
            "{w:?}"
        );
        assert_eq!(
            check_release("3.6.16", false).unwrap(),
            Vec::<String>::new()
        );
    }
}
