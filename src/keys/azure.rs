//! Azure Key Vault keys (`azure_kv` entries, spec §7.6), behind the `azure` cargo feature.
//!
//! A key is named by its URL, `https://<vault>.vault.azure.net/keys/<name>[/<version>]`, as sops
//! parses it (`^(https://[^/]+)/keys/([^/]+)(/[^/]*)?$`, surrounding spaces removed). Wrapping
//! calls the key operation `encrypt` with algorithm RSA-OAEP-256 and stores the result as
//! base64url **without padding** in `enc`; unwrapping calls `decrypt` with the same algorithm.
//! Without a version the vault's current one is used, and the version the service reports in the
//! reply's `kid` is recorded, so files always carry a concrete version, as sops' do.
//! veil uses Microsoft's official `azure_security_keyvault_keys` client.
//!
//! Credentials, in the order of the Azure SDK's `DefaultAzureCredential` that sops uses:
//!
//! | source | configured by |
//! |---|---|
//! | a static bearer token (veil's own, first when set) | `VEIL_AZURE_ACCESS_TOKEN` |
//! | service principal with a secret | `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET` |
//! | service principal with a certificate (when no secret is set, as in the Go SDK) | `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_CERTIFICATE_PATH` (PEM: certificate and RSA key, PKCS#8, PKCS#1 or encrypted PKCS#8), `AZURE_CLIENT_CERTIFICATE_PASSWORD`, `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN` |
//! | workload identity (AKS) | `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` |
//! | managed identity (App Service, VM, Arc) | the platform's variables; `AZURE_CLIENT_ID` picks a user-assigned identity |
//! | Azure CLI, then Azure Developer CLI | `az login`, `azd auth login` |
//!
//! `AZURE_TOKEN_CREDENTIALS` narrows the chain as in the Azure SDKs: `dev` (the CLIs), `prod`
//! (environment, workload identity, managed identity), or one credential's name
//! (`EnvironmentCredential`, `WorkloadIdentityCredential`, `ManagedIdentityCredential`,
//! `AzureCliCredential`, `AzureDeveloperCliCredential`). `AZURE_AUTHORITY_HOST` selects another
//! cloud's login endpoint. The certificate credential signs its client assertion in pure Rust
//! (`certificate.rs`; the SDK's own needs OpenSSL) and lets the SDK's `ClientAssertionCredential`
//! make the token request. On a machine that is not an Azure VM the managed identity endpoint is
//! probed for one second first, so the chain moves on quickly instead of retrying for a minute.
//!
//! `VEIL_AZURE_CA_BUNDLE` names a PEM file of CA certificates to trust besides the system's (for
//! a vault behind a TLS-inspecting proxy, or a local Key Vault emulator). The SDK only sends
//! tokens over HTTPS. The vault's authentication challenge must name a resource the vault's host
//! belongs to (`*.vault.azure.net` for `https://vault.azure.net`), except for a loopback vault
//! (127.0.0.0/8, `::1`, `localhost`), which is how emulators and veil's tests run.
//!
//! The client is async: a tokio current_thread runtime is built the first time an Azure key is
//! used, and only then. Connections and replies follow veil's network policy ([`super::net`]).
//! Errors name the key and say why (no credentials, 401, 403, 404, unreachable), never holding a
//! token or key material; the unwrapped part is moved straight into a zeroizing buffer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_security_keyvault_keys::models::{
    EncryptionAlgorithm, KeyClientEncryptOptions, KeyOperationParameters,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions, ResourceId};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use regex::Regex;
use zeroize::Zeroizing;

use super::net::{self, backoff, Timeouts, ATTEMPTS};
use super::{Identity, KeyEntry, KeyError, KeyPart, Recipient};

mod certificate;

use certificate::{CertificateAssertion, CertificateCredential, ClientCertificate};

const KIND: &str = "azure_kv";
/// sops' key URL pattern (`azkv/keysource.go`).
const URL_PATTERN: &str = r"^(https://[^/]+)/keys/([^/]+)(/[^/]*)?$";
/// A generally available Key Vault REST API version (the SDK's default is a preview).
const API_VERSION: &str = "7.6";
/// How long the managed identity endpoint of a VM gets to accept a connection.
const IMDS_PROBE: std::time::Duration = std::time::Duration::from_secs(1);
/// Entra ID of the public cloud, when `AZURE_AUTHORITY_HOST` is unset.
const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";
/// A static token is taken to be valid this long (the vault says when it is not).
const STATIC_TOKEN_LIFETIME_SECS: i64 = 3600;

/// One Azure Key Vault key: the vault's URL (`https://host`, no trailing slash), the key's name
/// and version (empty: the current one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureKvKey {
    pub vault_url: String,
    pub name: String,
    pub version: String,
}

impl AzureKvKey {
    /// A key URL as sops parses it: `https://VAULT/keys/NAME[/VERSION]`, spaces around removed.
    pub fn parse(url: &str) -> Result<AzureKvKey, KeyError> {
        static PATTERN: OnceLock<Regex> = OnceLock::new();
        let pattern = PATTERN.get_or_init(|| Regex::new(URL_PATTERN).expect("static regex"));
        let url = url.trim();
        let caps = pattern.captures(url).ok_or_else(|| KeyError {
            kind: KIND,
            name: url.to_string(),
            reason: "could not parse it into an Azure Key Vault key URL (expected \
                     https://VAULT.vault.azure.net/keys/NAME[/VERSION])"
                .into(),
        })?;
        Ok(AzureKvKey {
            vault_url: caps[1].to_string(),
            name: caps[2].to_string(),
            version: caps
                .get(3)
                .map(|v| v.as_str().trim_start_matches('/').to_string())
                .unwrap_or_default(),
        })
    }

    /// A key from a `.sops.yaml` key group's `{vaultUrl, key, version}`.
    pub fn from_parts(vault_url: &str, name: &str, version: &str) -> Result<AzureKvKey, KeyError> {
        let key = AzureKvKey {
            vault_url: vault_url.trim().trim_end_matches('/').to_string(),
            name: name.trim().to_string(),
            version: version.trim().to_string(),
        };
        let invalid = |reason: &str| KeyError {
            kind: KIND,
            name: key.url(),
            reason: reason.to_string(),
        };
        if !key.vault_url.starts_with("https://") || key.vault_url.len() <= "https://".len() {
            return Err(invalid("vaultUrl must be an https:// URL"));
        }
        if key.name.is_empty() || key.name.contains('/') || key.version.contains('/') {
            return Err(invalid(
                "key must be a key name, version a version (no '/')",
            ));
        }
        Ok(key)
    }

    /// The key of a file's `azure_kv` entry and its `enc`; `None` for other entries.
    pub fn from_entry(entry: &KeyEntry) -> Option<(AzureKvKey, &str)> {
        match entry {
            KeyEntry::AzureKv {
                vault_url,
                name,
                version,
                enc,
                ..
            } => Some((
                AzureKvKey {
                    vault_url: vault_url.clone(),
                    name: name.clone(),
                    version: version.clone(),
                },
                enc.as_str(),
            )),
            _ => None,
        }
    }

    /// `VAULT_URL/keys/NAME/VERSION`, sops' string form (also [`KeyEntry::name`]).
    pub fn url(&self) -> String {
        format!("{}/keys/{}/{}", self.vault_url, self.name, self.version)
    }

    /// Whether a file's entry is this key: the same vault and name, and the same version unless
    /// this key names none (then any version matches, e.g. for `rotate --rm-azure-kv`).
    pub fn matches(&self, entry: &KeyEntry) -> bool {
        AzureKvKey::from_entry(entry).is_some_and(|(other, _)| {
            other.vault_url.trim_end_matches('/') == self.vault_url
                && other.name == self.name
                && (self.version.is_empty() || other.version == self.version)
        })
    }

    /// The URL as users write it: without a trailing `/` when there is no version.
    fn display(&self) -> String {
        self.url().trim_end_matches('/').to_string()
    }

    fn error(&self, reason: impl Into<String>) -> KeyError {
        KeyError {
            kind: KIND,
            name: self.display(),
            reason: reason.into(),
        }
    }
}

/// A comma-separated URL list (`--azure-kv`, `SOPS_AZURE_KEYVAULT_URLS`, a rule's flat
/// `azure_keyvault`), items trimmed, empty items dropped.
pub fn split_urls(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Which credentials `AZURE_TOKEN_CREDENTIALS` allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Environment,
    WorkloadIdentity,
    ManagedIdentity,
    AzureCli,
    AzureDeveloperCli,
}

impl Source {
    const ALL: [Source; 5] = [
        Source::Environment,
        Source::WorkloadIdentity,
        Source::ManagedIdentity,
        Source::AzureCli,
        Source::AzureDeveloperCli,
    ];

    fn name(self) -> &'static str {
        match self {
            Source::Environment => "EnvironmentCredential",
            Source::WorkloadIdentity => "WorkloadIdentityCredential",
            Source::ManagedIdentity => "ManagedIdentityCredential",
            Source::AzureCli => "AzureCliCredential",
            Source::AzureDeveloperCli => "AzureDeveloperCliCredential",
        }
    }

    /// The sources `AZURE_TOKEN_CREDENTIALS` selects, in chain order.
    fn selected(setting: Option<&str>) -> Result<Vec<Source>, String> {
        let Some(setting) = setting.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(Source::ALL.to_vec());
        };
        match setting.to_ascii_lowercase().as_str() {
            "dev" => Ok(vec![Source::AzureCli, Source::AzureDeveloperCli]),
            "prod" => Ok(vec![
                Source::Environment,
                Source::WorkloadIdentity,
                Source::ManagedIdentity,
            ]),
            lower => Source::ALL
                .into_iter()
                .find(|s| s.name().eq_ignore_ascii_case(lower))
                .map(|s| vec![s])
                .ok_or_else(|| {
                    format!(
                        "AZURE_TOKEN_CREDENTIALS={setting:?} is not dev, prod or one of {}",
                        Source::ALL.map(Source::name).join(", ")
                    )
                }),
        }
    }
}

/// What the environment says about reaching Key Vault, read once per recipient or identity.
#[derive(Clone, Default)]
pub struct AzureSettings {
    /// `VEIL_AZURE_ACCESS_TOKEN`.
    token: Option<Zeroizing<String>>,
    /// `VEIL_AZURE_CA_BUNDLE`.
    ca_bundle: Option<PathBuf>,
    /// `AZURE_TOKEN_CREDENTIALS`.
    token_credentials: Option<String>,
    tenant_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Zeroizing<String>>,
    client_certificate_path: Option<String>,
    /// `AZURE_CLIENT_CERTIFICATE_PASSWORD`, as given (not trimmed).
    client_certificate_password: Option<Zeroizing<String>>,
    /// `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN` is `true` or `1`.
    send_certificate_chain: bool,
    /// `AZURE_AUTHORITY_HOST`.
    authority_host: Option<String>,
    federated_token_file: Option<PathBuf>,
    /// Whether a managed identity endpoint other than a VM's is configured (App Service, Arc).
    platform_identity_endpoint: bool,
}

impl AzureSettings {
    /// Settings from an environment lookup (empty values count as unset).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> AzureSettings {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        AzureSettings {
            token: get("VEIL_AZURE_ACCESS_TOKEN").map(Zeroizing::new),
            ca_bundle: get("VEIL_AZURE_CA_BUNDLE").map(PathBuf::from),
            token_credentials: get("AZURE_TOKEN_CREDENTIALS"),
            tenant_id: get("AZURE_TENANT_ID"),
            client_id: get("AZURE_CLIENT_ID"),
            client_secret: get("AZURE_CLIENT_SECRET").map(Zeroizing::new),
            client_certificate_path: get("AZURE_CLIENT_CERTIFICATE_PATH"),
            client_certificate_password: lookup("AZURE_CLIENT_CERTIFICATE_PASSWORD")
                .filter(|v| !v.is_empty())
                .map(Zeroizing::new),
            send_certificate_chain: get("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN")
                .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
            authority_host: get("AZURE_AUTHORITY_HOST"),
            federated_token_file: get("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            platform_identity_endpoint: ["IDENTITY_ENDPOINT", "MSI_ENDPOINT", "IMDS_ENDPOINT"]
                .iter()
                .any(|name| get(name).is_some()),
        }
    }

    pub fn from_process_env() -> AzureSettings {
        AzureSettings::from_env(|name| std::env::var(name).ok())
    }

    /// The HTTP client every Azure call goes through: veil's timeouts, the extra CA if any.
    fn http_client(&self, timeouts: Timeouts) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.connect + timeouts.read);
        if let Some(path) = &self.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                format!(
                    "cannot read VEIL_AZURE_CA_BUNDLE file {}: {e}",
                    path.display()
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "VEIL_AZURE_CA_BUNDLE file {} holds no usable PEM certificate: {e}",
                    path.display()
                )
            })?;
            if certs.is_empty() {
                return Err(format!(
                    "VEIL_AZURE_CA_BUNDLE file {} holds no PEM certificate",
                    path.display()
                ));
            }
            builder = builder.tls_certs_merge(certs);
        }
        builder
            .build()
            .map_err(|e| format!("cannot create the HTTP client: {}", super::error_chain(&e)))
    }

    /// Client options: veil's transport, [`ATTEMPTS`] tries with short pauses.
    fn client_options(&self) -> Result<ClientOptions, String> {
        let timeouts = net::timeouts()?;
        Ok(ClientOptions {
            transport: Some(Transport::new(Arc::new(self.http_client(timeouts)?))),
            retry: retry_options(timeouts),
            ..Default::default()
        })
    }

    /// The credential to get tokens with: the static token, else the chain.
    fn credential(&self) -> Result<Arc<dyn TokenCredential>, String> {
        if let Some(token) = &self.token {
            return Ok(Arc::new(StaticToken {
                token: token.clone(),
            }));
        }
        let options = self.client_options()?;
        let mut sources: Vec<ChainLink> = Vec::new();
        let mut skipped: Vec<String> = Vec::new();
        for source in Source::selected(self.token_credentials.as_deref())? {
            match self.link(source, &options) {
                Ok(Some(link)) => sources.push(link),
                Ok(None) => skipped.push(format!("{}: not configured", source.name())),
                Err(reason) => skipped.push(format!("{}: {reason}", source.name())),
            }
        }
        Ok(Arc::new(Chain {
            sources,
            skipped,
            chosen: AtomicUsize::new(usize::MAX),
        }))
    }

    /// One link of the chain; `None` when its settings are absent.
    fn link(&self, source: Source, options: &ClientOptions) -> Result<Option<ChainLink>, String> {
        use azure_identity::{
            AzureCliCredential, AzureDeveloperCliCredential, ClientSecretCredential,
            ClientSecretCredentialOptions, ManagedIdentityCredential,
            ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
            WorkloadIdentityCredentialOptions,
        };
        let sdk = |e: azure_core::Error| describe_credential_error(&e);
        let link = |credential: Arc<dyn TokenCredential>, decisive: bool| {
            Some(ChainLink {
                source,
                credential,
                decisive,
            })
        };
        Ok(match source {
            // As the Go SDK's EnvironmentCredential: tenant and client ID, then a secret, else a
            // certificate.
            Source::Environment => {
                let (secret, certificate) = (&self.client_secret, &self.client_certificate_path);
                if secret.is_none() && certificate.is_none() {
                    return Ok(None);
                }
                let (tenant, client) = match (&self.tenant_id, &self.client_id) {
                    (Some(tenant), Some(client)) => (tenant, client),
                    (None, _) => return Err("missing environment variable AZURE_TENANT_ID".into()),
                    (_, None) => return Err("missing environment variable AZURE_CLIENT_ID".into()),
                };
                match (secret, certificate) {
                    (Some(secret), _) => link(
                        ClientSecretCredential::new(
                            tenant,
                            client.clone(),
                            Secret::new(secret.to_string()),
                            Some(ClientSecretCredentialOptions {
                                client_options: options.clone(),
                            }),
                        )
                        .map_err(sdk)?,
                        true,
                    ),
                    (None, Some(path)) => link(
                        self.certificate_credential(tenant, client, path, options)?,
                        true,
                    ),
                    (None, None) => None,
                }
            }
            Source::WorkloadIdentity => {
                match (&self.tenant_id, &self.client_id, &self.federated_token_file) {
                    (Some(tenant), Some(client), Some(file)) => {
                        let mut wi = WorkloadIdentityCredentialOptions::default();
                        wi.credential_options.client_options = options.clone();
                        wi.tenant_id = Some(tenant.clone());
                        wi.client_id = Some(client.clone());
                        wi.token_file_path = Some(file.clone());
                        link(
                            WorkloadIdentityCredential::new(Some(wi)).map_err(sdk)?,
                            true,
                        )
                    }
                    _ => None,
                }
            }
            Source::ManagedIdentity => {
                let mut mi_options = options.clone();
                if !self.platform_identity_endpoint {
                    // A VM's endpoint: one short connection attempt per try, as the probe.
                    mi_options.transport =
                        Some(Transport::new(Arc::new(self.http_client(Timeouts {
                            connect: IMDS_PROBE,
                            ..net::timeouts()?
                        })?)));
                }
                let credential =
                    ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                        user_assigned_id: self.client_id.clone().map(UserAssignedId::ClientId),
                        client_options: mi_options,
                    }))
                    .map_err(sdk)?;
                let credential: Arc<dyn TokenCredential> = if self.platform_identity_endpoint {
                    credential
                } else {
                    Arc::new(ProbedImds { inner: credential })
                };
                link(credential, false)
            }
            Source::AzureCli => link(
                AzureCliCredential::new(Some(azure_identity::AzureCliCredentialOptions {
                    tenant_id: self.tenant_id.clone(),
                    ..Default::default()
                }))
                .map_err(sdk)?,
                false,
            ),
            Source::AzureDeveloperCli => link(
                AzureDeveloperCliCredential::new(Some(
                    azure_identity::AzureDeveloperCliCredentialOptions {
                        tenant_id: self.tenant_id.clone(),
                        ..Default::default()
                    },
                ))
                .map_err(sdk)?,
                false,
            ),
        })
    }

    /// A service principal's certificate credential: the file read now, assertions signed by
    /// veil, the token request made by the SDK's `ClientAssertionCredential`.
    fn certificate_credential(
        &self,
        tenant: &str,
        client: &str,
        path: &str,
        options: &ClientOptions,
    ) -> Result<Arc<dyn TokenCredential>, String> {
        use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
        use azure_identity::ClientAssertionCredentialOptions;
        let certificate = ClientCertificate::load(
            path,
            self.client_certificate_password
                .as_deref()
                .map(String::as_str),
        )?;
        // The assertion's audience is the token endpoint the SDK posts to: both are made from
        // the same authority host, set explicitly on the credential's options.
        let authority = self.authority_host.as_deref().unwrap_or(PUBLIC_AUTHORITY);
        let endpoint = azure_core::http::Url::parse(authority)
            .and_then(|url| url.join(&format!("/{tenant}/oauth2/v2.0/token")))
            .map_err(|e| format!("AZURE_AUTHORITY_HOST={authority:?} is not a URL: {e}"))?;
        let mut custom = CustomConfiguration::default();
        custom.authority_host = authority.to_string();
        let mut client_options = options.clone();
        client_options.cloud = Some(Arc::new(CloudConfiguration::Custom(custom)));
        let what = format!(
            "client certificate {path} (thumbprint {})",
            certificate.thumbprint_hex()
        );
        let assertion = CertificateAssertion {
            certificate: Arc::new(certificate),
            client_id: client.to_string(),
            audience: endpoint.to_string(),
            send_chain: self.send_certificate_chain,
        };
        let inner = azure_identity::ClientAssertionCredential::new(
            tenant.to_string(),
            client.to_string(),
            assertion,
            Some(ClientAssertionCredentialOptions { client_options }),
        )
        .map_err(|e| describe_credential_error(&e))?;
        Ok(Arc::new(CertificateCredential { inner, what }))
    }

    /// Whether the challenge resource must match the vault's host: always, but for loopback.
    fn verify_challenge_resource(vault_url: &str) -> bool {
        let host = vault_url
            .strip_prefix("https://")
            .unwrap_or(vault_url)
            .split('/')
            .next()
            .unwrap_or_default();
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        !loopback
    }
}

fn retry_options(timeouts: Timeouts) -> RetryOptions {
    let millis =
        |d: std::time::Duration| azure_core::time::Duration::milliseconds(d.as_millis() as i64);
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: millis(backoff(2)),
        max_retries: ATTEMPTS.saturating_sub(1),
        max_total_elapsed: millis(timeouts.read),
        max_delay: millis(backoff(ATTEMPTS + 8)),
    })
}

/// A bearer token taken as is (`VEIL_AZURE_ACCESS_TOKEN`).
struct StaticToken {
    token: Zeroizing<String>,
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken(<redacted>)")
    }
}

#[async_trait::async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            Secret::new(self.token.to_string()),
            azure_core::time::OffsetDateTime::now_utc()
                + azure_core::time::Duration::seconds(STATIC_TOKEN_LIFETIME_SECS),
        ))
    }
}

/// A VM's managed identity, tried only when its endpoint accepts a connection within a second.
struct ProbedImds {
    inner: Arc<dyn TokenCredential>,
}

impl std::fmt::Debug for ProbedImds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbedImds")
    }
}

#[async_trait::async_trait]
impl TokenCredential for ProbedImds {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let endpoint = std::net::SocketAddr::from(([169, 254, 169, 254], 80));
        if std::net::TcpStream::connect_timeout(&endpoint, IMDS_PROBE).is_err() {
            return Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                "no managed identity endpoint answers (not an Azure VM)",
            ));
        }
        self.inner.get_token(scopes, options).await
    }
}

struct ChainLink {
    source: Source,
    credential: Arc<dyn TokenCredential>,
    /// A configured service principal or workload identity: its failure ends the chain, as in
    /// the Azure SDK (its error is the one that matters).
    decisive: bool,
}

/// The credential chain: the first link that gives a token is kept for later calls.
struct Chain {
    sources: Vec<ChainLink>,
    /// Why links are missing, for the message when nothing works.
    skipped: Vec<String>,
    chosen: AtomicUsize,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field(
                "sources",
                &self
                    .sources
                    .iter()
                    .map(|l| l.source.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[async_trait::async_trait]
impl TokenCredential for Chain {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if let Some(link) = self.sources.get(self.chosen.load(Ordering::Relaxed)) {
            return link.credential.get_token(scopes, options).await;
        }
        let mut failures = self.skipped.clone();
        for (index, link) in self.sources.iter().enumerate() {
            match link.credential.get_token(scopes, options.clone()).await {
                Ok(token) => {
                    self.chosen.store(index, Ordering::Relaxed);
                    return Ok(token);
                }
                Err(err) => {
                    failures.push(format!(
                        "{}: {}",
                        link.source.name(),
                        describe_credential_error(&err)
                    ));
                    if link.decisive {
                        break;
                    }
                }
            }
        }
        Err(azure_core::Error::with_message(
            ErrorKind::Credential,
            format!("no Azure credential worked ({})", failures.join("; ")),
        ))
    }
}

/// The SDK's retry policy wraps every error in one of these; they say nothing to a user.
const RETRY_WRAPPERS: [&str; 2] = [
    "non-transport error occurred which will not be retried: ",
    "retry policy expired and the request will no longer be retried: ",
];

/// An error and its sources on one line, without the retry policy's wrappers.
fn chain(err: &azure_core::Error) -> String {
    let mut text = super::error_chain(err).replace('\n', " ");
    for wrapper in RETRY_WRAPPERS {
        text = text.replace(wrapper, "");
    }
    text
}

/// A credential's failure, on one line.
fn describe_credential_error(err: &azure_core::Error) -> String {
    chain(err)
}

/// What went wrong with a Key Vault call, said plainly; never the request, so never a token.
fn describe(err: &azure_core::Error) -> String {
    match err.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let code = u16::from(*status);
            let why = match code {
                400 => "the vault refused the request",
                401 => "authentication failed: the vault did not accept the token",
                403 => "access denied: the identity may not use this key",
                404 => "not found: the vault has no such key or key version",
                429 => "throttled by the vault",
                500..=599 => "the vault failed",
                _ => "unexpected reply",
            };
            let code_text = error_code
                .as_deref()
                .map(|c| format!(", {c}"))
                .unwrap_or_default();
            format!("{why} ({code}{code_text}): {}", chain(err))
        }
        ErrorKind::Credential => format!("no usable Azure credentials: {}", chain(err)),
        ErrorKind::Io | ErrorKind::Connection => {
            let text = chain(err);
            if text.contains("certificate") {
                format!(
                    "the vault's TLS certificate is not trusted (VEIL_AZURE_CA_BUNDLE can add \
                     a CA): {text}"
                )
            } else {
                format!("Azure Key Vault is unreachable: {text}")
            }
        }
        _ => chain(err),
    }
}

/// The process' runtime, made on first use.
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the Azure client runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Clients for these settings: one credential, one client per vault, made on first use.
struct Client {
    settings: AzureSettings,
    credential: OnceLock<Result<Arc<dyn TokenCredential>, String>>,
    vaults: Mutex<HashMap<String, Arc<KeyClient>>>,
}

impl Client {
    fn new(settings: AzureSettings) -> Client {
        Client {
            settings,
            credential: OnceLock::new(),
            vaults: Mutex::new(HashMap::new()),
        }
    }

    /// The per-vault clients. A thread that panicked while holding the lock cannot have left
    /// the map half-changed (an insert is one step), so a poisoned lock is used as it is.
    fn vaults(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<KeyClient>>> {
        self.vaults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(
        &self,
        vault_url: &str,
    ) -> Result<(&'static tokio::runtime::Runtime, Arc<KeyClient>), String> {
        let runtime = runtime()?;
        if let Some(client) = self.vaults().get(vault_url) {
            return Ok((runtime, client.clone()));
        }
        let credential = self
            .credential
            .get_or_init(|| self.settings.credential())
            .as_ref()
            .map_err(Clone::clone)?
            .clone();
        let options = KeyClientOptions {
            api_version: API_VERSION.to_string(),
            client_options: self.settings.client_options()?,
            verify_challenge_resource: Some(AzureSettings::verify_challenge_resource(vault_url)),
        };
        let client = Arc::new(
            KeyClient::new(vault_url, credential, Some(options)).map_err(|e| {
                format!(
                    "cannot create the Key Vault client: {}",
                    super::error_chain(&e)
                )
            })?,
        );
        self.vaults().insert(vault_url.to_string(), client.clone());
        Ok((runtime, client))
    }

    /// Encrypts `part`; returns the key version the service used and `enc`.
    fn encrypt(&self, key: &AzureKvKey, part: &KeyPart) -> Result<(String, String), String> {
        let (runtime, client) = self.get(&key.vault_url)?;
        let parameters = KeyOperationParameters {
            algorithm: Some(EncryptionAlgorithm::RsaOaep256),
            value: Some(part.as_bytes().to_vec()),
            ..Default::default()
        };
        let body = parameters
            .try_into()
            .map_err(|e: azure_core::Error| format!("cannot build the request: {e}"))?;
        let options = KeyClientEncryptOptions {
            key_version: Some(key.version.clone()).filter(|v| !v.is_empty()),
            ..Default::default()
        };
        let result = runtime
            .block_on(async {
                client
                    .encrypt(&key.name, body, Some(options))
                    .await?
                    .into_model()
            })
            .map_err(|e| {
                format!(
                    "failed to encrypt sops data key with Azure Key Vault key: {}",
                    describe(&e)
                )
            })?;
        let ciphertext = result
            .result
            .filter(|c| !c.is_empty())
            .ok_or("Azure Key Vault returned no ciphertext")?;
        let version = match &result.kid {
            Some(kid) => kid
                .parse::<ResourceId>()
                .ok()
                .and_then(|id| id.version)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    format!("Azure Key Vault returned a kid without a version: {kid}")
                })?,
            None if !key.version.is_empty() => key.version.clone(),
            None => return Err("Azure Key Vault did not say which key version it used".into()),
        };
        Ok((version, URL_SAFE_NO_PAD.encode(ciphertext)))
    }

    fn decrypt(&self, key: &AzureKvKey, enc: &str) -> Result<KeyPart, String> {
        let ciphertext = URL_SAFE_NO_PAD
            .decode(enc.trim().trim_end_matches('='))
            .map_err(|e| format!("failed to base64url-decode the encrypted data key: {e}"))?;
        let (runtime, client) = self.get(&key.vault_url)?;
        let parameters = KeyOperationParameters {
            algorithm: Some(EncryptionAlgorithm::RsaOaep256),
            value: Some(ciphertext),
            ..Default::default()
        };
        let body = parameters
            .try_into()
            .map_err(|e: azure_core::Error| format!("cannot build the request: {e}"))?;
        let result = runtime
            .block_on(async {
                client
                    .decrypt(&key.name, &key.version, body, None)
                    .await?
                    .into_model()
            })
            .map_err(|e| {
                format!(
                    "failed to decrypt sops data key with Azure Key Vault key: {}",
                    describe(&e)
                )
            })?;
        let plaintext = result
            .result
            .ok_or("Azure Key Vault returned no plaintext")?;
        Ok(KeyPart::new(plaintext))
    }
}

/// An Azure Key Vault key to wrap the data key (or a share) with.
pub struct AzureKvRecipient {
    key: AzureKvKey,
    client: Client,
}

impl AzureKvRecipient {
    /// A recipient for a key URL, with this process' environment; refuses a malformed URL.
    pub fn parse(url: &str) -> Result<AzureKvRecipient, KeyError> {
        Ok(AzureKvRecipient::with_settings(
            AzureKvKey::parse(url)?,
            AzureSettings::from_process_env(),
        ))
    }

    pub fn new(key: AzureKvKey) -> AzureKvRecipient {
        AzureKvRecipient::with_settings(key, AzureSettings::from_process_env())
    }

    pub fn with_settings(key: AzureKvKey, settings: AzureSettings) -> AzureKvRecipient {
        AzureKvRecipient {
            key,
            client: Client::new(settings),
        }
    }
}

impl Recipient for AzureKvRecipient {
    fn wrap(&self, part: &KeyPart) -> Result<KeyEntry, KeyError> {
        let (version, enc) = self
            .client
            .encrypt(&self.key, part)
            .map_err(|reason| self.key.error(reason))?;
        Ok(KeyEntry::AzureKv {
            vault_url: self.key.vault_url.clone(),
            name: self.key.name.clone(),
            version,
            created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            enc,
        })
    }

    fn name(&self) -> String {
        self.key.url()
    }
}

/// Opens `azure_kv` entries through Key Vault with the credentials the environment gives.
pub struct AzureKvIdentity {
    client: Client,
}

impl AzureKvIdentity {
    pub fn from_process_env() -> AzureKvIdentity {
        AzureKvIdentity::with_settings(AzureSettings::from_process_env())
    }

    pub fn with_settings(settings: AzureSettings) -> AzureKvIdentity {
        AzureKvIdentity {
            client: Client::new(settings),
        }
    }
}

impl Identity for AzureKvIdentity {
    fn unwrap(&self, entry: &KeyEntry) -> Option<Result<KeyPart, KeyError>> {
        let (key, enc) = AzureKvKey::from_entry(entry)?;
        Some(
            self.client
                .decrypt(&key, enc)
                .map_err(|reason| key.error(reason)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_urls_parse_as_sops_parses_them() {
        let key = AzureKvKey::parse(" https://v.vault.azure.net/keys/sops/0123abcd ").unwrap();
        assert_eq!(
            key,
            AzureKvKey {
                vault_url: "https://v.vault.azure.net".into(),
                name: "sops".into(),
                version: "0123abcd".into(),
            }
        );
        assert_eq!(key.url(), "https://v.vault.azure.net/keys/sops/0123abcd");
        for latest in [
            "https://v.vault.azure.net/keys/sops",
            "https://v.vault.azure.net/keys/sops/",
        ] {
            let key = AzureKvKey::parse(latest).unwrap();
            assert_eq!(key.name, "sops");
            assert_eq!(key.version, "", "{latest}");
        }
        for bad in [
            "",
            "http://v.vault.azure.net/keys/sops/1",
            "https://v.vault.azure.net/secrets/sops/1",
            "https://v.vault.azure.net/keys/sops/1/extra",
            "https://v.vault.azure.net/keys/",
            "v.vault.azure.net/keys/sops",
        ] {
            let err = AzureKvKey::parse(bad).expect_err(bad);
            assert_eq!(err.kind, "azure_kv");
            assert!(err.reason.contains("could not parse"), "{bad}: {err}");
        }
    }

    #[test]
    fn key_group_parts_are_checked_and_trailing_slashes_dropped() {
        let key = AzureKvKey::from_parts("https://v.vault.azure.net/", "k", "").unwrap();
        assert_eq!(key.vault_url, "https://v.vault.azure.net");
        assert!(AzureKvKey::from_parts("http://v", "k", "").is_err());
        assert!(AzureKvKey::from_parts("https://v", "", "").is_err());
        assert!(AzureKvKey::from_parts("https://v", "a/b", "").is_err());
    }

    #[test]
    fn matching_without_a_version_takes_any_version() {
        let entry = KeyEntry::AzureKv {
            vault_url: "https://v.vault.azure.net".into(),
            name: "k".into(),
            version: "v2".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            enc: "e".into(),
        };
        assert_eq!(entry.name(), "https://v.vault.azure.net/keys/k/v2");
        let parse = |u: &str| AzureKvKey::parse(u).unwrap();
        assert!(parse("https://v.vault.azure.net/keys/k").matches(&entry));
        assert!(parse("https://v.vault.azure.net/keys/k/v2").matches(&entry));
        assert!(!parse("https://v.vault.azure.net/keys/k/v1").matches(&entry));
        assert!(!parse("https://w.vault.azure.net/keys/k").matches(&entry));
    }

    #[test]
    fn url_lists_are_trimmed() {
        assert_eq!(
            split_urls(" https://a/keys/k , https://b/keys/l/1,,"),
            vec!["https://a/keys/k".to_string(), "https://b/keys/l/1".into()]
        );
    }

    #[test]
    fn token_credentials_setting_narrows_the_chain() {
        assert_eq!(Source::selected(None).unwrap(), Source::ALL.to_vec());
        assert_eq!(
            Source::selected(Some("dev")).unwrap(),
            vec![Source::AzureCli, Source::AzureDeveloperCli]
        );
        assert_eq!(Source::selected(Some("PROD")).unwrap().len(), 3);
        assert_eq!(
            Source::selected(Some("azureclicredential")).unwrap(),
            vec![Source::AzureCli]
        );
        let err = Source::selected(Some("mystery")).unwrap_err();
        assert!(err.contains("AZURE_TOKEN_CREDENTIALS"), "{err}");
    }

    #[test]
    fn challenge_resources_are_verified_except_on_loopback() {
        assert!(AzureSettings::verify_challenge_resource(
            "https://v.vault.azure.net"
        ));
        assert!(AzureSettings::verify_challenge_resource(
            "https://10.0.0.1:443"
        ));
        for local in [
            "https://127.0.0.1:8443",
            "https://localhost",
            "https://[::1]:8443",
            "https://127.1.2.3",
        ] {
            assert!(!AzureSettings::verify_challenge_resource(local), "{local}");
        }
    }

    #[test]
    fn settings_come_from_the_lookup_and_secrets_stay_out_of_debug() {
        let settings = AzureSettings::from_env(|name| match name {
            "VEIL_AZURE_ACCESS_TOKEN" => Some(" tok ".into()),
            "AZURE_CLIENT_SECRET" => Some(String::new()),
            "MSI_ENDPOINT" => Some("http://127.0.0.1:1".into()),
            _ => None,
        });
        assert_eq!(settings.token.as_deref().map(String::as_str), Some("tok"));
        assert!(settings.client_secret.is_none());
        assert!(settings.platform_identity_endpoint);
        let credential = settings.credential().unwrap();
        assert!(!format!("{credential:?}").contains("tok"));
    }

    fn environment_failure(vars: &[(&str, &str)]) -> String {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let settings = AzureSettings::from_env(|name| {
            if name == "AZURE_TOKEN_CREDENTIALS" {
                return Some("EnvironmentCredential".into());
            }
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        });
        let chain = settings.credential().unwrap();
        let err = runtime()
            .unwrap()
            .block_on(chain.get_token(&["https://vault.azure.net/.default"], None))
            .unwrap_err();
        err.to_string()
    }

    #[test]
    fn a_certificate_credential_names_what_is_missing_or_unreadable() {
        let text = environment_failure(&[("AZURE_CLIENT_CERTIFICATE_PATH", "/nonexistent/c.pem")]);
        assert!(text.contains("EnvironmentCredential"), "{text}");
        assert!(text.contains("AZURE_TENANT_ID"), "{text}");
        let text = environment_failure(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/nonexistent/c.pem"),
        ]);
        assert!(text.contains("/nonexistent/c.pem"), "{text}");
        assert!(text.contains("AZURE_CLIENT_CERTIFICATE_PATH"), "{text}");
    }

    #[test]
    fn certificate_settings_come_from_the_environment() {
        let settings = AzureSettings::from_env(|name| match name {
            "AZURE_CLIENT_CERTIFICATE_PASSWORD" => Some(" spaced ".into()),
            "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN" => Some("TRUE".into()),
            _ => None,
        });
        // A password is taken as given: spaces may be part of it.
        assert_eq!(
            settings
                .client_certificate_password
                .as_deref()
                .map(String::as_str),
            Some(" spaced ")
        );
        assert!(settings.send_certificate_chain);
        for (value, send) in [("1", true), ("false", false), ("yes", false)] {
            let settings = AzureSettings::from_env(|name| {
                (name == "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN").then(|| value.to_string())
            });
            assert_eq!(settings.send_certificate_chain, send, "{value}");
        }
    }

    #[test]
    fn entries_of_other_kinds_are_not_claimed() {
        let entry = KeyEntry::Age {
            recipient: "age1x".into(),
            enc: "e".into(),
        };
        assert!(AzureKvIdentity::with_settings(AzureSettings::default())
            .unwrap(&entry)
            .is_none());
    }

    #[test]
    fn undecodable_enc_fails_without_a_request() {
        let entry = KeyEntry::AzureKv {
            vault_url: "https://v.vault.azure.net".into(),
            name: "k".into(),
            version: "1".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            enc: "%%%".into(),
        };
        let identity = AzureKvIdentity::with_settings(AzureSettings::default());
        let err = match identity.unwrap(&entry) {
            Some(Err(e)) => e,
            _ => panic!("expected an error"),
        };
        assert_eq!(err.name, "https://v.vault.azure.net/keys/k/1");
        assert!(err.reason.contains("base64url"), "{}", err.reason);
    }

    #[test]
    fn enc_is_base64url_without_padding() {
        // 256 bytes, as an RSA-2048 ciphertext: standard base64 would hold '+', '/' and '='.
        let bytes: Vec<u8> = (0..=255u8).collect();
        let enc = URL_SAFE_NO_PAD.encode(&bytes);
        assert!(!enc.contains(['+', '/', '=']), "{enc}");
        assert!(enc.contains(['-', '_']));
        assert_eq!(URL_SAFE_NO_PAD.decode(&enc).unwrap(), bytes);
    }
}
