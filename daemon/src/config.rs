//! Command line and environment. Every flag `--some-flag` has the environment fallback
//! `KAMAJID_SOME_FLAG`, so the same binary is configured by a Deployment's env or by hand; the
//! names earlier releases read are still honoured ([`with_renamed_env`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where tenant control planes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// Pods in the admin cluster (production).
    Kubernetes,
    /// Supervised local processes on this host (laptops, CI, edge sites).
    Process,
}

/// Parses `16443-17442`.
pub fn port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a port range such as 16443-17442"))?;
    let (a, b): (u16, u16) = (
        a.trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a port"))?,
        b.trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a port"))?,
    );
    if a == 0 || b < a.saturating_add(2) {
        return Err(format!(
            "{s:?} must hold at least three ports (each tenant takes three)"
        ));
    }
    Ok(a..=b)
}

impl Default for ProcessRuntimeConfig {
    fn default() -> Self {
        Self {
            runtime: RuntimeKind::Kubernetes,
            k8s_bin_dir: None,
            process_dir: PathBuf::from("/var/lib/kamajid/tenants"),
            process_port_range: 16443..=17442,
            advertise_address: "127.0.0.1".into(),
            konnectivity_server_bin: None,
        }
    }
}

/// The process runtime's settings.
#[derive(Debug, Clone, Args)]
pub struct ProcessRuntimeConfig {
    /// Where tenant control planes run: `kubernetes` (pods in the admin cluster) or `process`
    /// (supervised local processes on this host).
    #[arg(
        long,
        env = "KAMAJID_RUNTIME",
        value_enum,
        default_value = "kubernetes"
    )]
    pub runtime: RuntimeKind,
    /// Directory of Kubernetes server binaries (kube-apiserver, kube-controller-manager,
    /// kube-scheduler), flat or in `v<version>/` subdirectories; for `--runtime=process`.
    #[arg(long, env = "KAMAJID_K8S_BIN_DIR")]
    pub k8s_bin_dir: Option<PathBuf>,
    /// Where the process runtime keeps each tenant's certificates, kubeconfigs, PID files and logs.
    #[arg(
        long,
        env = "KAMAJID_PROCESS_DIR",
        default_value = "/var/lib/kamajid/tenants"
    )]
    pub process_dir: PathBuf,
    /// Ports the process runtime hands out, three per tenant (apiserver, controller-manager,
    /// scheduler).
    #[arg(long, env = "KAMAJID_PROCESS_PORT_RANGE", default_value = "16443-17442", value_parser = port_range)]
    pub process_port_range: std::ops::RangeInclusive<u16>,
    /// Host or IP address workers and clients reach process-runtime apiservers at.
    #[arg(long, env = "KAMAJID_ADVERTISE_ADDRESS", default_value = "127.0.0.1")]
    pub advertise_address: String,
    /// The konnectivity server binary the process runtime runs beside the apiserver of a tenant
    /// with `network.konnectivity`; unset: `konnectivity-server` in --k8s-bin-dir.
    #[arg(long, env = "KAMAJID_KONNECTIVITY_SERVER_BIN")]
    pub konnectivity_server_bin: Option<PathBuf>,
}

/// How kamajid writes its log (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line per event, fields as `key=value`; coloured only on a terminal.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`), for log pipelines.
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "kamajid",
    version,
    about = "The kamaji daemon",
    after_help = "What is logged is chosen by RUST_LOG (default: info,h2=warn,tower=warn), e.g. \
                  RUST_LOG=debug, or RUST_LOG=info,kamaji_core::lifecycle=debug for every \
                  lifecycle step, routine checks included."
)]
pub struct Cli {
    /// The log's format: `text` or `json`.
    #[arg(
        long,
        global = true,
        env = "KAMAJID_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API and run background work. (A local development environment is
    /// `kamajid-dev`, a separate program of the test kit.)
    Serve(Box<ServeConfig>),
    /// Print the reference of `kamajid serve`'s flags as Markdown (docs/guides/kamajid-flags.md).
    #[command(hide = true)]
    Reference,
}

/// Environment names earlier releases read, and the flag each sets now.
pub const RENAMED_ENV: [(&str, &str); 6] = [
    ("KAMAJID_LEADER_LEASE_TTL", "--leader-lease-seconds"),
    ("KAMAJID_HEALTH_INTERVAL", "--health-interval-seconds"),
    ("KAMAJID_PROBE_TIMEOUT", "--probe-timeout-seconds"),
    (
        "KAMAJID_CERTIFICATE_VALIDITY",
        "--certificate-validity-seconds",
    ),
    (
        "KAMAJID_CERTIFICATE_RENEW_BEFORE",
        "--certificate-renew-before-seconds",
    ),
    ("KAMAJI_K8S_BIN_DIR", "--k8s-bin-dir"),
];

/// The environment name of `--flag`: `KAMAJID_FLAG`.
pub fn env_name(long: &str) -> String {
    format!("KAMAJID_{}", long.replace('-', "_").to_uppercase())
}

/// `args` with the flags that an old environment name sets (`RENAMED_ENV`), unless the flag or
/// its new environment name is given; and a warning for each old name used. `env` reads the
/// environment (a parameter, so the rule is tested without touching the process's).
pub fn with_renamed_env(
    mut args: Vec<std::ffi::OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> (Vec<std::ffi::OsString>, Vec<String>) {
    let mut warnings = Vec::new();
    for (old, flag) in RENAMED_ENV {
        let Some(value) = env(old) else { continue };
        let given = args.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
        });
        let new = env_name(flag.trim_start_matches("--"));
        if given || env(&new).is_some() {
            warnings.push(format!("{old} is ignored: {new} (or {flag}) is set"));
            continue;
        }
        warnings.push(format!(
            "{old} is deprecated: set {new} (or {flag}) instead"
        ));
        // Only `serve` has these flags (global flags may come before it).
        if args.iter().skip(1).any(|a| a.to_str() == Some("serve")) {
            args.push(format!("{flag}={value}").into());
        }
    }
    (args, warnings)
}

/// The reference of `kamajid serve`'s flags, as Markdown: each flag, its environment name, its
/// default and what it does (the first paragraph of its help).
pub fn flags_markdown() -> String {
    use clap::CommandFactory;
    let cli = Cli::command();
    let mut out = String::from(
        "---\npage_title: \"kamajid flags\"\n---\n\n# kamajid flags\n\n<!-- Generated by `make docs` (`kamajid reference`) from the command line's definition; \
         a test fails when it differs. -->\n\n\
         Every flag `--some-flag` can be set as the environment variable `KAMAJID_SOME_FLAG` (a flag \
         given on the command line wins). `RUST_LOG` chooses what is logged (default \
         `info,h2=warn,tower=warn`).\n\n\
         | Flag | Environment | Default | What it does |\n|---|---|---|---|\n",
    );
    let serve = cli.find_subcommand("serve");
    let args = cli
        .get_arguments()
        .chain(serve.into_iter().flat_map(|s| s.get_arguments()));
    for a in args {
        let Some(long) = a.get_long() else { continue };
        let env = a
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let default = a
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(",");
        let default = if default.is_empty() {
            if a.is_required_set() {
                "required".to_owned()
            } else {
                "—".to_owned()
            }
        } else {
            format!("`{default}`")
        };
        let help = a
            .get_long_help()
            .or(a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let first = help.split("\n\n").next().unwrap_or("").replace('\n', " ");
        out.push_str(&format!(
            "| `--{long}` | {env} | {default} | {} |\n",
            first.replace('|', "\\|")
        ));
    }
    out
}

/// How to reach the etcd that holds kamajid's own records.
#[derive(Debug, Clone, Args)]
pub struct StateEtcdConfig {
    /// Client URLs of the state etcd (comma-separated).
    #[arg(
        long = "state-etcd-endpoints",
        env = "KAMAJID_STATE_ETCD_ENDPOINTS",
        value_delimiter = ',',
        required = true
    )]
    pub endpoints: Vec<String>,
    /// PEM CA that signed the state etcd's serving certificate.
    #[arg(long = "state-etcd-ca-file", env = "KAMAJID_STATE_ETCD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for the state etcd.
    #[arg(long = "state-etcd-cert-file", env = "KAMAJID_STATE_ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long = "state-etcd-key-file", env = "KAMAJID_STATE_ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address the gRPC API listens on.
    #[arg(long, env = "KAMAJID_LISTEN", default_value = "127.0.0.1:7443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address of /healthz, /readyz (ready: the state etcd answers) and /metrics
    /// (Prometheus). Loopback by default, so nothing is exposed unless asked; a pod sets 0.0.0.0
    /// for its kubelet's probes and Prometheus.
    #[arg(long, env = "KAMAJID_METRICS_LISTEN", default_value = "127.0.0.1:9090")]
    pub metrics_listen: SocketAddr,
    /// PEM serving certificate of the gRPC API (with its chain). Re-read when it changes: new
    /// connections get the new one.
    #[arg(long, env = "KAMAJID_TLS_CERT_FILE")]
    pub tls_cert_file: PathBuf,
    /// PEM private key of the serving certificate.
    #[arg(long, env = "KAMAJID_TLS_KEY_FILE")]
    pub tls_key_file: PathBuf,
    /// File of bearer tokens accepted by the API, one per line ('#' starts a comment). Re-read
    /// when it changes.
    #[arg(long, env = "KAMAJID_TOKENS_FILE")]
    pub tokens_file: PathBuf,
    /// File holding the key-encryption key (32 bytes, base64) that seals secrets in records.
    /// To rotate, put a new key on the first line and keep the old one after it: kamajid
    /// re-reads the file, re-seals everything with the new key and logs when the old one may go.
    #[arg(long, env = "KAMAJID_KEK_FILE")]
    pub kek_file: PathBuf,
    #[command(flatten)]
    pub state_etcd: StateEtcdConfig,
    /// Seconds between health probes of each datastore.
    #[arg(long, env = "KAMAJID_HEALTH_INTERVAL_SECONDS", default_value_t = 15)]
    pub health_interval_seconds: u64,
    /// Seconds a datastore probe may take before the datastore counts as unreachable.
    #[arg(long, env = "KAMAJID_PROBE_TIMEOUT_SECONDS", default_value_t = 5)]
    pub probe_timeout_seconds: u64,
    /// TTL of the leader lease: how long a crashed leader blocks background work.
    #[arg(long, env = "KAMAJID_LEADER_LEASE_SECONDS", default_value_t = 15)]
    pub leader_lease_seconds: i64,
    /// Kubeconfig of the admin cluster that runs tenant control planes. Without it kamajid uses
    /// its in-cluster service account, or KUBECONFIG; with none available, tenant creation is
    /// refused (datastores still work).
    #[arg(long, env = "KAMAJID_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// DNS domain of tenant clusters (kubelet --cluster-domain on workers).
    #[arg(
        long,
        env = "KAMAJID_TENANT_DNS_DOMAIN",
        default_value = "cluster.local"
    )]
    pub tenant_dns_domain: String,
    /// MiB of datastore quota set aside for each tenant when it is placed, until its measured
    /// usage says more. A fresh small cluster uses a few MiB; busy ones hundreds.
    #[arg(long, env = "KAMAJID_TENANT_RESERVATION_MIB", default_value_t = 64)]
    pub tenant_reservation_mib: i64,
    /// Seconds between re-applies of each Ready tenant's control-plane objects and the objects
    /// inside it: fields kamajid owns that someone else changed are taken back then.
    #[arg(long, env = "KAMAJID_RESYNC_SECONDS", default_value_t = kamaji_core::lifecycle::RESYNC_SECONDS)]
    pub resync_seconds: i64,
    /// Seconds the leaf certificates kamajid signs for control planes (serving, client,
    /// component kubeconfigs) are valid.
    #[arg(long, env = "KAMAJID_CERTIFICATE_VALIDITY_SECONDS", default_value_t = 365 * 86_400)]
    pub certificate_validity_seconds: i64,
    /// Seconds before the first of a tenant's leaf certificates expires that kamajid renews
    /// them all; less than the validity.
    #[arg(long, env = "KAMAJID_CERTIFICATE_RENEW_BEFORE_SECONDS", default_value_t = 30 * 86_400)]
    pub certificate_renew_before_seconds: i64,
    /// Tenants of one draining datastore moved off it at the same time. Each move holds its
    /// tenant's writes for seconds and restarts its apiserver; more at once empties a
    /// datastore sooner but loads both datastores and the admin cluster more.
    #[arg(
        long,
        env = "KAMAJID_DRAIN_PARALLEL",
        default_value_t = kamaji_core::lifecycle::drain::DRAIN_PARALLEL as u16,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub drain_parallel: u16,
    /// The https URL where --issuer-listen is published (an ingress or TLS proxy in front of
    /// it). A tenant with `public_issuer` signs its service-account tokens as the issuer
    /// `<this URL>/<tenant uid>`, whose OpenID Connect discovery document and key set kamajid
    /// serves. Unset: tenants cannot ask for a public issuer.
    #[arg(long, env = "KAMAJID_SERVICE_ACCOUNT_ISSUER_BASE_URL")]
    pub service_account_issuer_base_url: Option<String>,
    /// Plain-HTTP address serving tenants' discovery documents
    /// (`/<uid>/.well-known/openid-configuration`) and key sets (`/<uid>/openid/v1/jwks`):
    /// read-only and unauthenticated, as OIDC clients fetch them. Unset: not served.
    #[arg(long, env = "KAMAJID_ISSUER_LISTEN")]
    pub issuer_listen: Option<SocketAddr>,
    /// Where tenant backups are kept: a directory (`/var/lib/kamajid/backups`, or
    /// `file:///...`), or S3-compatible object storage, `s3://<bucket>[/<prefix>]`, with the
    /// endpoint, region and credentials from the usual `AWS_*` variables (`AWS_ENDPOINT_URL`,
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP=true` for an
    /// endpoint without TLS). Archives are encrypted with the KEK. Unset: no backups.
    #[arg(long, env = "KAMAJID_BACKUP_STORE")]
    pub backup_store: Option<String>,
    /// Kubernetes versions this kamajid runs control planes of (the binaries or images it has),
    /// comma-separated, e.g. `1.36.3,1.37.2`: what tenants' release channels upgrade them to.
    /// Nothing else is ever fetched to decide it. Unset: no automatic upgrades.
    #[arg(long, env = "KAMAJID_SERVED_VERSIONS", value_delimiter = ',', value_parser = served_version)]
    pub served_versions: Vec<kamaji_core::spec::Version>,
    /// The patch from which the `stable` release channel moves tenants to a new minor (2: from
    /// `1.38.2` on, once the `.0` and `.1` releases have had their fixes).
    #[arg(long, env = "KAMAJID_STABLE_AFTER_PATCHES", default_value_t = kamaji_core::maintenance::STABLE_AFTER_PATCHES)]
    pub stable_after_patches: u32,
    #[command(flatten)]
    pub process: ProcessRuntimeConfig,
    #[command(flatten)]
    pub shards: ShardConfig,
}

fn served_version(v: &str) -> Result<kamaji_core::spec::Version, String> {
    kamaji_proto::tenant::version("--served-versions", v.trim()).map_err(|e| e.message)
}

/// How kamajid keeps its etcd datastores (shards) healthy.
#[derive(Debug, Clone, Args)]
pub struct ShardConfig {
    /// Accept etcd datastores running a release with a known bypass of etcd's auth checks (such
    /// as CVE-2023-32082, before 3.4.26 and 3.5.9), which lets tenants reach beyond their
    /// prefix; their status then says why they are unsafe. Off: such datastores are refused.
    #[arg(long, env = "KAMAJID_ALLOW_VULNERABLE_ETCD")]
    pub allow_vulnerable_etcd: bool,
    /// Seconds of history kamajid keeps on each datastore when it compacts it (at least this,
    /// at most twice): what tenants' watches can resume from. kube-apiserver's own compactor
    /// keeps 5 minutes on a dedicated etcd.
    #[arg(long, env = "KAMAJID_COMPACTION_RETENTION_SECONDS", default_value_t = kamaji_core::shard::RETENTION_SECONDS,
          value_parser = clap::value_parser!(i64).range(10..=86_400))]
    pub compaction_retention_seconds: i64,
    /// A datastore member is defragmented once this percentage of its file is free pages (and
    /// at least --defrag-min-free-mib).
    #[arg(long, env = "KAMAJID_DEFRAG_FREE_PERCENT", default_value_t = kamaji_core::shard::DEFRAG_FREE_PERCENT,
          value_parser = clap::value_parser!(i64).range(1..=100))]
    pub defrag_free_percent: i64,
    /// The least free space (MiB) worth a defragmentation, which blocks the member while it
    /// runs.
    #[arg(long, env = "KAMAJID_DEFRAG_MIN_FREE_MIB", default_value_t = kamaji_core::shard::DEFRAG_MIN_FREE_BYTES >> 20,
          value_parser = clap::value_parser!(i64).range(0..=1_048_576))]
    pub defrag_min_free_mib: i64,
}

impl Default for ShardConfig {
    fn default() -> Self {
        Self {
            allow_vulnerable_etcd: false,
            compaction_retention_seconds: kamaji_core::shard::RETENTION_SECONDS,
            defrag_free_percent: kamaji_core::shard::DEFRAG_FREE_PERCENT,
            defrag_min_free_mib: kamaji_core::shard::DEFRAG_MIN_FREE_BYTES >> 20,
        }
    }
}

impl ShardConfig {
    pub fn policy(&self) -> kamaji_core::shard::Policy {
        kamaji_core::shard::Policy {
            retention_seconds: self.compaction_retention_seconds,
            defrag_free_percent: self.defrag_free_percent,
            defrag_min_free_bytes: self.defrag_min_free_mib << 20,
        }
    }
}

impl ServeConfig {
    pub fn health_interval(&self) -> Duration {
        Duration::from_secs(self.health_interval_seconds.max(1))
    }
    pub fn probe_timeout(&self) -> Duration {
        Duration::from_secs(self.probe_timeout_seconds.max(1))
    }

    /// The leaf validity and renewal window, checked: a window as long as the validity would
    /// renew again right after every renewal.
    pub fn certificate_lifetimes(&self) -> Result<(time::Duration, time::Duration), String> {
        let (validity, before) = (
            self.certificate_validity_seconds,
            self.certificate_renew_before_seconds,
        );
        if validity < 60 {
            return Err(format!(
                "--certificate-validity-seconds is {validity}: at least 60"
            ));
        }
        if before < 1 || before >= validity {
            return Err(format!(
                "--certificate-renew-before-seconds is {before}: between 1 and the validity ({validity}) exclusive"
            ));
        }
        Ok((
            time::Duration::seconds(validity),
            time::Duration::seconds(before),
        ))
    }

    /// The issuer base URL, checked: OIDC issuers are https URLs without a query or fragment
    /// (the apiserver refuses a key-set URL that is not https).
    /// The versions this kamajid serves, for release channels.
    pub fn served(&self) -> kamaji_core::maintenance::Served {
        kamaji_core::maintenance::Served::new(
            self.served_versions.clone(),
            self.stable_after_patches,
        )
    }

    pub fn issuer_base(&self) -> Result<Option<String>, String> {
        let Some(url) = &self.service_account_issuer_base_url else {
            return Ok(None);
        };
        let rest = url.strip_prefix("https://").ok_or_else(|| {
            format!("--service-account-issuer-base-url is {url:?}: an https:// URL")
        })?;
        if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
            return Err(format!(
                "--service-account-issuer-base-url is {url:?}: an https:// URL with a host and no query or fragment"
            ));
        }
        Ok(Some(url.trim_end_matches('/').to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_base_is_an_https_url_with_a_host() {
        assert_eq!(serve(&[]).issuer_base(), Ok(None));
        assert_eq!(
            serve(&["--service-account-issuer-base-url=https://oidc.example.com/k/"]).issuer_base(),
            Ok(Some("https://oidc.example.com/k".into()))
        );
        for bad in ["http://oidc.example.com", "https://", "https://x/?a=b"] {
            let e = serve(&[&format!("--service-account-issuer-base-url={bad}")])
                .issuer_base()
                .unwrap_err();
            assert!(e.contains("--service-account-issuer-base-url"), "{e}");
        }
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut argv = vec![
            "kamajid",
            "serve",
            "--tls-cert-file=c",
            "--tls-key-file=k",
            "--tokens-file=t",
            "--kek-file=e",
            "--state-etcd-endpoints=https://127.0.0.1:2379",
        ];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
    }

    fn serve(args: &[&str]) -> ServeConfig {
        let Command::Serve(c) = parse(args).expect("parses").command else {
            panic!("not serve")
        };
        *c
    }

    #[test]
    fn every_flag_is_set_by_its_own_environment_name() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        let mut checked = 0;
        for a in cli.get_arguments().chain(serve.get_arguments()) {
            let (Some(long), Some(env)) = (a.get_long(), a.get_env()) else {
                continue;
            };
            assert_eq!(env.to_string_lossy(), env_name(long), "--{long}");
            checked += 1;
        }
        assert!(checked >= 24, "{checked}");
    }

    #[test]
    fn the_flags_reference_in_the_guides_is_the_command_line_s() {
        let doc = include_str!("../../docs/guides/kamajid-flags.md");
        assert!(
            doc == flags_markdown(),
            "docs/guides/kamajid-flags.md differs from the flags: run make docs"
        );
        assert!(
            doc.contains("| `--metrics-listen` | `KAMAJID_METRICS_LISTEN` | `127.0.0.1:9090` |")
        );
    }

    #[test]
    fn old_environment_names_still_set_their_flags_with_a_warning() {
        let env = |k: &str| match k {
            "KAMAJID_LEADER_LEASE_TTL" => Some("7".to_owned()),
            "KAMAJI_K8S_BIN_DIR" => Some("/opt/k8s".to_owned()),
            "KAMAJID_PROBE_TIMEOUT" => Some("9".to_owned()),
            "KAMAJID_PROBE_TIMEOUT_SECONDS" => Some("3".to_owned()),
            _ => None,
        };
        let argv: Vec<std::ffi::OsString> = vec![
            "kamajid".into(),
            "--log-format=json".into(),
            "serve".into(),
            "--k8s-bin-dir=/usr/local/k8s".into(),
        ];
        let (args, warnings) = with_renamed_env(argv, env);
        let args: Vec<_> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.contains(&"--leader-lease-seconds=7".to_owned()),
            "{args:?}"
        );
        assert!(
            !args.iter().any(|a| a == "--k8s-bin-dir=/opt/k8s"),
            "{args:?}"
        );
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--probe-timeout-seconds")),
            "{args:?}"
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings[0].contains("KAMAJID_LEADER_LEASE_SECONDS"),
            "{warnings:?}"
        );
    }

    #[test]
    fn drain_parallelism_is_bounded_and_named_when_out_of_range() {
        assert_eq!(serve(&[]).drain_parallel, 2);
        assert_eq!(serve(&["--drain-parallel=5"]).drain_parallel, 5);
        for bad in ["--drain-parallel=0", "--drain-parallel=65"] {
            let e = parse(&[bad]).expect_err("refused").to_string();
            assert!(
                e.contains("--drain-parallel") && e.contains("1..=64"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_renewal_window_as_long_as_the_validity_is_refused() {
        let (v, b) = serve(&[]).certificate_lifetimes().unwrap();
        assert_eq!((v.whole_days(), b.whole_days()), (365, 30));
        let e = serve(&[
            "--certificate-validity-seconds=3600",
            "--certificate-renew-before-seconds=3600",
        ])
        .certificate_lifetimes()
        .unwrap_err();
        assert!(e.contains("--certificate-renew-before-seconds"), "{e}");
        assert!(serve(&["--certificate-validity-seconds=10"])
            .certificate_lifetimes()
            .unwrap_err()
            .contains("at least 60"));
    }
}
