//! Google Cloud KMS keys (`gcp_kms` entries, spec §7.5), behind the `gcp` cargo feature.
//!
//! A key is named by its resource ID,
//! `projects/<project>/locations/<location>/keyRings/<ring>/cryptoKeys/<key>` (spaces removed, as
//! sops does). Wrapping calls Cloud KMS `Encrypt(name, plaintext=part)` and stores base64
//! (standard, padded) of the returned ciphertext as `enc`; unwrapping calls `Decrypt` with the same
//! name. veil uses the official `google-cloud-kms-v1` client over its REST/JSON transport.
//!
//! Credentials, in sops' order: `GOOGLE_CREDENTIALS` (the JSON of a credentials file, or a path to
//! one), else `GOOGLE_OAUTH_ACCESS_TOKEN` (a bearer token used as is), else Application Default
//! Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file, the metadata server).
//! `SOPS_GCP_KMS_ENDPOINT` replaces the service endpoint (a URL; `host:port` means https), else
//! `SOPS_GCP_KMS_UNIVERSE_DOMAIN` selects another universe. `SOPS_GCP_KMS_CLIENT_TYPE` is accepted
//! but veil always speaks REST: `rest` and `grpc` reach the same service methods.
//!
//! Timeouts and retries follow veil's network policy (`net.rs`): each attempt may take the
//! reply timeout (this client has no separate connect timeout), retryable errors are tried
//! `net::ATTEMPTS` times with its backoff, and a service that cannot be reached is reported as
//! "unreachable".
//!
//! The client is async: a tokio current_thread runtime is built the first time a GCP key is used,
//! and only then. Errors name the key and carry the service's status and message, never key
//! material or credentials; the unwrapped part is moved straight into a zeroizing buffer.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag,
};
use google_cloud_auth::errors::CredentialsError;
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use google_cloud_kms_v1::client::KeyManagementService;
use regex::Regex;
use zeroize::Zeroizing;

use super::{net, Identity, KeyEntry, KeyError, KeyPart, Recipient};

const KIND: &str = "gcp_kms";
/// sops' resource ID pattern (`gcpkms/keysource.go`).
const RESOURCE_PATTERN: &str = r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$";

/// One GCP KMS master key: its resource ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcpKmsKey {
    pub resource_id: String,
}

impl GcpKmsKey {
    /// The key as sops reads it: spaces removed. Checked when used ([`GcpKmsKey::check`]).
    pub fn parse(text: &str) -> GcpKmsKey {
        GcpKmsKey {
            resource_id: text.chars().filter(|c| *c != ' ').collect(),
        }
    }

    /// The key of a file's `gcp_kms` entry and its `enc`; `None` for other entries.
    pub fn from_entry(entry: &KeyEntry) -> Option<(GcpKmsKey, &str)> {
        match entry {
            KeyEntry::GcpKms {
                resource_id, enc, ..
            } => Some((
                GcpKmsKey {
                    resource_id: resource_id.clone(),
                },
                enc.as_str(),
            )),
            _ => None,
        }
    }

    /// Whether the resource ID is a CryptoKey's, as sops checks it.
    pub fn check(&self) -> Result<(), String> {
        static PATTERN: OnceLock<Regex> = OnceLock::new();
        let pattern = PATTERN.get_or_init(|| Regex::new(RESOURCE_PATTERN).expect("static regex"));
        if pattern.is_match(&self.resource_id) {
            Ok(())
        } else {
            Err(format!(
                "no valid resource ID found in {:?} (expected \
                 projects/P/locations/L/keyRings/R/cryptoKeys/K)",
                self.resource_id
            ))
        }
    }

    fn error(&self, reason: impl Into<String>) -> KeyError {
        KeyError {
            kind: KIND,
            name: self.resource_id.clone(),
            reason: reason.into(),
        }
    }
}

/// A comma-separated resource ID list (`--gcp-kms`, `SOPS_GCP_KMS_IDS`, a rule's flat `gcp_kms`),
/// each item with its spaces removed, empty items dropped.
pub fn split_ids(text: &str) -> Vec<String> {
    text.split(',')
        .map(|s| s.chars().filter(|c| *c != ' ').collect::<String>())
        .filter(|s| !s.is_empty())
        .collect()
}

/// What the environment says about reaching Cloud KMS, read once per recipient or identity.
#[derive(Clone, Default)]
pub struct GcpSettings {
    /// `GOOGLE_CREDENTIALS`: JSON, or a path to a JSON file.
    credentials: Option<Zeroizing<String>>,
    /// `GOOGLE_OAUTH_ACCESS_TOKEN`.
    token: Option<Zeroizing<String>>,
    /// `SOPS_GCP_KMS_ENDPOINT`.
    endpoint: Option<String>,
    /// `SOPS_GCP_KMS_UNIVERSE_DOMAIN`.
    universe_domain: Option<String>,
}

impl GcpSettings {
    /// Settings from an environment lookup (empty values count as unset).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> GcpSettings {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        GcpSettings {
            credentials: get("GOOGLE_CREDENTIALS").map(Zeroizing::new),
            token: get("GOOGLE_OAUTH_ACCESS_TOKEN").map(|t| Zeroizing::new(t.trim().to_string())),
            endpoint: get("SOPS_GCP_KMS_ENDPOINT").map(|e| e.trim().to_string()),
            universe_domain: get("SOPS_GCP_KMS_UNIVERSE_DOMAIN").map(|u| u.trim().to_string()),
        }
    }

    pub fn from_process_env() -> GcpSettings {
        GcpSettings::from_env(|name| std::env::var(name).ok())
    }

    /// The endpoint URL to use, if overridden: a bare `host:port` is taken as https.
    pub fn endpoint_url(&self) -> Option<String> {
        self.endpoint.as_ref().map(|e| {
            if e.contains("://") {
                e.trim_end_matches('/').to_string()
            } else {
                format!("https://{}", e.trim_end_matches('/'))
            }
        })
    }

    fn credentials(&self) -> Result<Credentials, String> {
        if let Some(value) = &self.credentials {
            let path = std::path::Path::new(value.trim());
            let json: Zeroizing<String> = if path.is_file() {
                Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "credentials: cannot read GOOGLE_CREDENTIALS file {}: {e}",
                        path.display()
                    )
                })?)
            } else {
                value.clone()
            };
            return json_credentials(&json);
        }
        if let Some(token) = &self.token {
            return Ok(Credentials::from(StaticToken {
                token: token.clone(),
                universe_domain: self.universe_domain.clone(),
            }));
        }
        let mut builder = google_cloud_auth::credentials::Builder::default();
        if let Some(ud) = &self.universe_domain {
            builder = builder.with_universe_domain(ud.clone());
        }
        builder
            .build()
            .map_err(|e| format!("credentials: no Application Default Credentials: {e}"))
    }
}

/// Credentials from the JSON of a credentials file, by its `type`, as Google's libraries read it.
fn json_credentials(json: &str) -> Result<Credentials, String> {
    use google_cloud_auth::credentials::{
        external_account, impersonated, service_account, user_account,
    };
    // The error of a failed parse could quote the input: say only where it failed.
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        format!(
            "credentials: GOOGLE_CREDENTIALS is neither a file nor valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_string();
    let built = match kind.as_str() {
        "service_account" => service_account::Builder::new(value).build(),
        "authorized_user" => user_account::Builder::new(value).build(),
        "external_account" => external_account::Builder::new(value).build(),
        "impersonated_service_account" => impersonated::Builder::new(value).build(),
        other => {
            return Err(format!(
                "credentials: unsupported GOOGLE_CREDENTIALS type {other:?}"
            ))
        }
    };
    built.map_err(|e| format!("credentials: invalid {kind} credentials: {e}"))
}

/// A bearer token taken as is (`GOOGLE_OAUTH_ACCESS_TOKEN`), as sops' static token source.
struct StaticToken {
    token: Zeroizing<String>,
    universe_domain: Option<String>,
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken(<redacted>)")
    }
}

impl CredentialsProvider for StaticToken {
    async fn headers(
        &self,
        _extensions: http::Extensions,
    ) -> Result<CacheableResource<http::HeaderMap>, CredentialsError> {
        let value = Zeroizing::new(format!("Bearer {}", self.token.as_str()));
        let mut header = http::HeaderValue::from_str(&value).map_err(|_| {
            CredentialsError::from_msg(
                false,
                "GOOGLE_OAUTH_ACCESS_TOKEN holds characters not allowed in a header",
            )
        })?;
        header.set_sensitive(true);
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, header);
        Ok(CacheableResource::New {
            entity_tag: EntityTag::new(),
            data: headers,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        self.universe_domain.clone()
    }
}

/// The service's status and message for a failed call (never the request, so never key
/// material); a call that got no answer says the service is unreachable.
fn describe(err: &google_cloud_kms_v1::Error) -> String {
    match err.status() {
        Some(status) => format!("{:?}: {}", status.code, status.message),
        None if err.is_connect() || err.is_io() || err.is_timeout() => {
            format!("GCP KMS is unreachable: {}", super::error_chain(err))
        }
        None => super::error_chain(err),
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
                .map_err(|e| format!("cannot start the GCP client runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A client for these settings, made on first use and kept.
struct Client {
    settings: GcpSettings,
    client: OnceLock<Result<KeyManagementService, String>>,
}

impl Client {
    fn new(settings: GcpSettings) -> Client {
        Client {
            settings,
            client: OnceLock::new(),
        }
    }

    fn get(&self) -> Result<(&'static tokio::runtime::Runtime, &KeyManagementService), String> {
        let runtime = runtime()?;
        let client = self
            .client
            .get_or_init(|| {
                let credentials = self.settings.credentials()?;
                let timeouts = net::timeouts()?;
                // A few quick attempts: an unreachable service must not stall other keys.
                let retry = Aip194Strict.with_attempt_limit(net::ATTEMPTS);
                let backoff = ExponentialBackoffBuilder::new()
                    .with_initial_delay(net::backoff(2))
                    .with_maximum_delay(net::backoff(u32::MAX))
                    .build()
                    .map_err(|e| format!("cannot configure the GCP KMS client: {e}"))?;
                let mut builder = KeyManagementService::builder()
                    .with_credentials(credentials)
                    .with_retry_policy(retry)
                    .with_backoff_policy(backoff)
                    .with_attempt_timeout(timeouts.read);
                if let Some(endpoint) = self.settings.endpoint_url() {
                    builder = builder.with_endpoint(endpoint);
                } else if let Some(ud) = &self.settings.universe_domain {
                    builder = builder.with_universe_domain(ud.clone());
                }
                runtime.block_on(builder.build()).map_err(|e| {
                    format!(
                        "cannot create the GCP KMS client: {}",
                        super::error_chain(&e)
                    )
                })
            })
            .as_ref()
            .map_err(Clone::clone)?;
        Ok((runtime, client))
    }

    fn encrypt(&self, key: &GcpKmsKey, part: &KeyPart) -> Result<String, String> {
        key.check()?;
        let (runtime, client) = self.get()?;
        let request = client
            .encrypt()
            .set_name(key.resource_id.clone())
            .set_plaintext(part.as_bytes().to_vec());
        let response = runtime.block_on(request.send()).map_err(|e| {
            format!(
                "failed to encrypt sops data key with GCP KMS key: {}",
                describe(&e)
            )
        })?;
        if response.ciphertext.is_empty() {
            return Err("GCP KMS returned no ciphertext".into());
        }
        Ok(STANDARD.encode(&response.ciphertext))
    }

    fn decrypt(&self, key: &GcpKmsKey, enc: &str) -> Result<KeyPart, String> {
        key.check()?;
        let ciphertext = STANDARD
            .decode(enc.trim())
            .map_err(|e| format!("error base64-decoding encrypted data key: {e}"))?;
        let (runtime, client) = self.get()?;
        let request = client
            .decrypt()
            .set_name(key.resource_id.clone())
            .set_ciphertext(ciphertext);
        let response = runtime.block_on(request.send()).map_err(|e| {
            format!(
                "failed to decrypt sops data key with GCP KMS key: {}",
                describe(&e)
            )
        })?;
        Ok(KeyPart::new(Vec::from(response.plaintext)))
    }
}

/// A GCP KMS key to wrap the data key (or a share) with.
pub struct GcpKmsRecipient {
    key: GcpKmsKey,
    client: Client,
}

impl GcpKmsRecipient {
    /// A recipient for a resource ID, with this process' environment; refuses an ID that is
    /// not a CryptoKey's.
    pub fn parse(text: &str) -> Result<GcpKmsRecipient, KeyError> {
        GcpKmsRecipient::with_settings(GcpKmsKey::parse(text), GcpSettings::from_process_env())
    }

    pub fn with_settings(
        key: GcpKmsKey,
        settings: GcpSettings,
    ) -> Result<GcpKmsRecipient, KeyError> {
        key.check().map_err(|reason| key.error(reason))?;
        Ok(GcpKmsRecipient {
            key,
            client: Client::new(settings),
        })
    }
}

impl Recipient for GcpKmsRecipient {
    fn wrap(&self, part: &KeyPart) -> Result<KeyEntry, KeyError> {
        let enc = self
            .client
            .encrypt(&self.key, part)
            .map_err(|reason| self.key.error(reason))?;
        Ok(KeyEntry::GcpKms {
            resource_id: self.key.resource_id.clone(),
            created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            enc,
        })
    }

    fn name(&self) -> String {
        self.key.resource_id.clone()
    }
}

/// Opens `gcp_kms` entries through Cloud KMS with the credentials the environment gives.
pub struct GcpKmsIdentity {
    client: Client,
}

impl GcpKmsIdentity {
    pub fn from_process_env() -> GcpKmsIdentity {
        GcpKmsIdentity::with_settings(GcpSettings::from_process_env())
    }

    pub fn with_settings(settings: GcpSettings) -> GcpKmsIdentity {
        GcpKmsIdentity {
            client: Client::new(settings),
        }
    }
}

impl Identity for GcpKmsIdentity {
    fn unwrap(&self, entry: &KeyEntry) -> Option<Result<KeyPart, KeyError>> {
        let (key, enc) = GcpKmsKey::from_entry(entry)?;
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

    const ID: &str = "projects/p/locations/global/keyRings/r/cryptoKeys/k";

    #[test]
    fn resource_ids_drop_spaces_and_are_checked() {
        let key = GcpKmsKey::parse(" projects/p/locations/global/keyRings/r/cryptoKeys/k ");
        assert_eq!(key.resource_id, ID);
        assert!(key.check().is_ok());
        for bad in [
            "",
            "projects/p/locations/l/keyRings/r",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
            "arn:aws:kms:us-east-1:1:key/k",
        ] {
            assert!(GcpKmsKey::parse(bad).check().is_err(), "{bad}");
            assert!(
                GcpKmsRecipient::with_settings(GcpKmsKey::parse(bad), GcpSettings::default())
                    .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn id_lists_drop_spaces_and_empty_items() {
        assert_eq!(split_ids(" a/b , c,,"), vec!["a/b".to_string(), "c".into()]);
    }

    #[test]
    fn settings_come_from_the_lookup_and_endpoints_get_a_scheme() {
        let settings = GcpSettings::from_env(|name| match name {
            "SOPS_GCP_KMS_ENDPOINT" => Some("kms.example:443".into()),
            "GOOGLE_OAUTH_ACCESS_TOKEN" => Some(" tok ".into()),
            "GOOGLE_CREDENTIALS" => Some(String::new()),
            _ => None,
        });
        assert_eq!(
            settings.endpoint_url().as_deref(),
            Some("https://kms.example:443")
        );
        assert_eq!(settings.token.as_deref().map(String::as_str), Some("tok"));
        assert!(settings.credentials.is_none());
        let local = GcpSettings::from_env(|name| {
            (name == "SOPS_GCP_KMS_ENDPOINT").then(|| "http://127.0.0.1:1/".to_string())
        });
        assert_eq!(local.endpoint_url().as_deref(), Some("http://127.0.0.1:1"));
    }

    #[test]
    fn bad_credentials_json_is_reported_without_its_content() {
        let settings = GcpSettings::from_env(|name| {
            (name == "GOOGLE_CREDENTIALS").then(|| "{not json secret-value".to_string())
        });
        let err = settings.credentials().expect_err("an error");
        assert!(err.contains("GOOGLE_CREDENTIALS"), "{err}");
        assert!(!err.contains("secret-value"), "{err}");
        let unknown = json_credentials(r#"{"type":"mystery"}"#).unwrap_err();
        assert!(unknown.contains("mystery"), "{unknown}");
    }

    #[test]
    fn entries_of_other_kinds_are_not_claimed() {
        let entry = KeyEntry::Age {
            recipient: "age1x".into(),
            enc: "e".into(),
        };
        assert!(GcpKmsIdentity::with_settings(GcpSettings::default())
            .unwrap(&entry)
            .is_none());
    }

    #[test]
    fn undecodable_enc_fails_without_a_request() {
        let entry = KeyEntry::GcpKms {
            resource_id: ID.into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            enc: "%%%".into(),
        };
        let identity = GcpKmsIdentity::with_settings(GcpSettings::default());
        let err = match identity.unwrap(&entry) {
            Some(Err(e)) => e,
            _ => panic!("expected an error"),
        };
        assert_eq!(err.name, ID);
        assert!(err.reason.contains("base64"), "{}", err.reason);
    }
}
