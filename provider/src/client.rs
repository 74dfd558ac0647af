//! The connection to kamajid: TLS, the bearer token on every call, and the one mapping of gRPC
//! statuses to Terraform diagnostics.

use std::sync::Arc;

use kamaji_proto::errors::field_errors;
use kamaji_proto::v1;
use kamaji_proto::v1::bootstrap_tokens_client::BootstrapTokensClient;
use kamaji_proto::v1::datastores_client::DatastoresClient;
use kamaji_proto::v1::tenant_backups_client::TenantBackupsClient;
use kamaji_proto::v1::tenant_clusters_client::TenantClustersClient;
use tf_provider::{AttributePath, Diagnostics};
use tokio::sync::RwLock;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

/// Resolved provider settings.
#[derive(Clone)]
pub struct Settings {
    pub endpoint: String,
    pub token: String,
    pub ca_certificate: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("endpoint {endpoint:?} is not a valid URL: {detail}")]
    Endpoint { endpoint: String, detail: String },
    #[error("TLS settings for {endpoint}: {detail}")]
    Tls { endpoint: String, detail: String },
}

#[derive(Clone)]
pub struct AuthToken(Arc<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for AuthToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        // One debug line per call (TF_LOG=DEBUG): which RPC, never its payload or the token.
        if let Some(m) = req.extensions().get::<tonic::GrpcMethod>() {
            tracing::debug!(rpc = %format!("{}/{}", m.service(), m.method()), "calling kamajid");
        }
        req.metadata_mut()
            .insert("authorization", (*self.0).clone());
        Ok(req)
    }
}

pub type Datastores = DatastoresClient<InterceptedService<Channel, AuthToken>>;
pub type TenantClusters = TenantClustersClient<InterceptedService<Channel, AuthToken>>;
pub type BootstrapTokens = BootstrapTokensClient<InterceptedService<Channel, AuthToken>>;
pub type TenantBackups = TenantBackupsClient<InterceptedService<Channel, AuthToken>>;

/// A configured client. Cheap to clone: clones share one HTTP/2 connection.
#[derive(Clone)]
pub struct Client {
    pub endpoint: String,
    channel: Channel,
    token: AuthToken,
}

impl Client {
    /// Prepares a lazy connection: nothing is dialled until the first call, so `terraform
    /// validate` and plans without remote reads never need kamajid.
    pub fn new(s: &Settings) -> Result<Self, ConnectError> {
        let mut ep = Endpoint::from_shared(s.endpoint.clone())
            .map_err(|e| ConnectError::Endpoint {
                endpoint: s.endpoint.clone(),
                detail: e.to_string(),
            })?
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(120));
        if s.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &s.ca_certificate {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            ep = ep.tls_config(tls).map_err(|e| ConnectError::Tls {
                endpoint: s.endpoint.clone(),
                detail: e.to_string(),
            })?;
        }
        let value = format!("Bearer {}", s.token)
            .parse()
            .map_err(|_| ConnectError::Tls {
                endpoint: s.endpoint.clone(),
                detail: "token has characters not allowed in a header".into(),
            })?;
        Ok(Self {
            endpoint: s.endpoint.clone(),
            channel: ep.connect_lazy(),
            token: AuthToken(Arc::new(value)),
        })
    }

    pub fn datastores(&self) -> Datastores {
        DatastoresClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    pub fn tenant_clusters(&self) -> TenantClusters {
        TenantClustersClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    pub fn bootstrap_tokens(&self) -> BootstrapTokens {
        BootstrapTokensClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    pub fn tenant_backups(&self) -> TenantBackups {
        TenantBackupsClient::with_interceptor(self.channel.clone(), self.token.clone())
    }
}

/// The client, once `configure` has run. Resources hold a clone of this handle.
#[derive(Clone, Default)]
pub struct Shared(Arc<RwLock<Option<Client>>>);

impl Shared {
    pub async fn set(&self, c: Client) {
        *self.0.write().await = Some(c);
    }

    /// The configured client, or an error diagnostic when the provider was not configured.
    pub async fn get(&self, diags: &mut Diagnostics) -> Option<Client> {
        let c = self.0.read().await.clone();
        if c.is_none() {
            diags.root_error(
                "kamaji provider is not configured",
                "Set endpoint, token and ca_certificate in the provider block or KAMAJI_ENDPOINT, KAMAJI_TOKEN and KAMAJI_CA_CERTIFICATE.",
            );
        }
        c
    }
}

/// How long a read waits for kamajid to answer again (a restarted kamajid, a replaced pod, a
/// Service still sending to the old one) before the failure is reported.
pub const READ_PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// Makes the read `call` (idempotent) again while kamajid does not answer (`Unavailable`),
/// backing off from 250 ms to 2 s, for up to [`READ_PATIENCE`]; a plan right after kamajid
/// restarts then waits instead of failing.
pub async fn patiently<T, Fut>(
    what: &str,
    mut call: impl FnMut() -> Fut,
) -> Result<tonic::Response<T>, Status>
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    let start = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(250);
    loop {
        match call().await {
            Err(s) if s.code() == Code::Unavailable && start.elapsed() + pause < READ_PATIENCE => {
                tracing::warn!(rpc = what, error = %s.message(), "kamajid does not answer; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            r => return r,
        }
    }
}

/// Reports a failed call. Field violations become errors on the attribute they name; other
/// statuses a root error that says what to check.
pub fn report(diags: &mut Diagnostics, what: &str, endpoint: &str, status: &Status) {
    let fields = field_errors(status);
    if !fields.is_empty() {
        for f in fields {
            let path = f.field.split('.').fold(AttributePath::root(), |p, step| {
                p.attribute(step.to_owned())
            });
            diags.error(format!("Invalid {}", f.field), f.message, path);
        }
        return;
    }
    let detail = match status.code() {
        Code::Unavailable | Code::DeadlineExceeded => format!(
            "kamajid at {endpoint} did not answer: {}. Check that kamajid is running and that endpoint and \
             ca_certificate are right.",
            status.message()
        ),
        Code::Unauthenticated => format!(
            "kamajid at {endpoint} refused the credentials: {}. Check token (or KAMAJI_TOKEN).",
            status.message()
        ),
        Code::Unimplemented => format!(
            "kamajid at {endpoint} does not serve this call ({}); upgrade kamajid to a version that matches the provider.",
            status.message()
        ),
        _ => status.message().to_owned(),
    };
    diags.root_error(format!("{what} failed"), detail);
}

/// Tenants per List page: far below gRPC's 4 MiB default answer (about 1 KiB each).
const LIST_PAGE: i32 = 500;

/// Every tenant cluster `req` selects, a page at a time (a kamajid from before pages answers
/// with all of them in the first).
pub async fn list_tenant_clusters(
    c: &mut TenantClusters,
    mut req: v1::ListTenantClustersRequest,
) -> Result<Vec<v1::TenantCluster>, Status> {
    req.page_size = LIST_PAGE;
    let mut out = Vec::new();
    loop {
        let resp = c.list_tenant_clusters(req.clone()).await?.into_inner();
        out.extend(resp.tenant_clusters);
        if resp.next_page_token.is_empty() {
            return Ok(out);
        }
        req.page_token = resp.next_page_token;
    }
}
