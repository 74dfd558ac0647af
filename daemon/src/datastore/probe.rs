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

use super::{AdminCredentials, Member, Phase};
use crate::etcd::{connect, error_chain, EtcdTls};

/// What a successful probe learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    pub etcd_version: String,
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
}

impl ProbeError {
    /// The attribute a user has to change.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } | Self::NoClientCertAuth | Self::AuthDisabled => "endpoints",
            Self::UntrustedServer { .. } => "ca_certificate",
            Self::CertificateRejected { .. } | Self::NotRoot { .. } => "client_certificate",
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
}

/// Probes real etcd clusters.
#[derive(Debug, Clone)]
pub struct EtcdProber {
    pub timeout: Duration,
}

/// Sorts a failed call into the reason a user can act on.
fn classify(endpoints: &[String], err: &etcd_client::Error) -> ProbeError {
    let detail = error_chain(err);
    let d = detail.to_ascii_lowercase();
    if d.contains("unknownissuer")
        || d.contains("invalid peer certificate")
        || d.contains("notvalidforname")
    {
        ProbeError::UntrustedServer { detail }
    } else if d.contains("certificaterequired")
        || d.contains("badcertificate")
        || d.contains("unknownca")
        || d.contains("certificate required")
        || d.contains("bad certificate")
        || d.contains("unknown ca")
    {
        ProbeError::CertificateRejected { detail }
    } else {
        ProbeError::Unreachable {
            endpoints: endpoints.join(","),
            detail,
        }
    }
}

impl EtcdProber {
    async fn admin_client(&self, creds: &AdminCredentials) -> Result<Client, ProbeError> {
        let tls = EtcdTls {
            ca_pem: Some(creds.ca_certificate.clone()),
            identity: Some((creds.client_certificate.clone(), creds.client_key.clone())),
        };
        connect(&creds.endpoints, &tls, self.timeout)
            .await
            .map_err(|e| classify(&creds.endpoints, &e))
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
        let status = client
            .status()
            .await
            .map_err(|e| classify(&creds.endpoints, &e))?;

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
            return Err(match classify(&creds.endpoints, &e) {
                ProbeError::Unreachable { .. } => ProbeError::NotRoot {
                    cn,
                    detail: error_chain(&e),
                },
                other => other,
            });
        }
        let members = client
            .member_list()
            .await
            .map_err(|e| classify(&creds.endpoints, &e))?;
        Ok(ProbeReport {
            etcd_version: status.version().to_owned(),
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
