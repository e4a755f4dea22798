//! AWS KMS keys (`kms` entries, spec §7.4), behind the `aws` cargo feature.
//!
//! A key is named `arn[+role_arn]`: the KMS key (or alias) ARN, optionally followed by the ARN of
//! an IAM role to assume first. Wrapping calls KMS `Encrypt(KeyId=arn, Plaintext=part,
//! EncryptionContext=context)` and stores base64 (standard, padded) of the `CiphertextBlob` as
//! `enc`; unwrapping calls `Decrypt` with the same key id and context. The region is the one in
//! the ARN (`arn:aws[-partition]:kms:<region>:<account>:(key|alias)/…`), as in sops.
//!
//! Credentials come from the AWS SDK's default chain (environment, shared config and credentials
//! files, SSO, web identity, ECS, IMDS), with the entry's `aws_profile` (or `--aws-profile`) as
//! the shared-config profile. With a `role`, veil assumes it through STS first, with the session
//! name `sops@<hostname>` (characters outside `[a-zA-Z0-9=,.@_-]` removed, at most 64
//! characters), exactly as sops does. The endpoint can be overridden as in every AWS SDK, with
//! `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_KMS` / `AWS_ENDPOINT_URL_STS` (or `endpoint_url` in the
//! profile); set `AWS_EC2_METADATA_DISABLED=true` to skip the IMDS probe off EC2.
//!
//! Timeouts and retries follow veil's network policy (`net.rs`): the SDK's connect timeout, read
//! and per-attempt timeouts, and standard retries with `net::ATTEMPTS` attempts and its backoff,
//! for KMS and for STS alike. A service that cannot be reached is reported as "unreachable".
//!
//! The SDK is async: a tokio current_thread runtime is built the first time a KMS key is used,
//! and only then; the rest of veil stays synchronous (the keyring's threads each block on it). Clients are kept per region, profile and
//! role for the life of the process, so a file with many KMS entries assumes a role once.
//! Errors name the key and carry the service's error code and message, never key material; the
//! unwrapped part is moved straight into a zeroizing buffer.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_kms::config::{ProvideCredentials, Region};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use regex::Regex;

use super::{net, Identity, KeyEntry, KeyError, KeyPart, Recipient};

const KIND: &str = "kms";
/// sops' `arnRegex`: the region is the first group.
const ARN_PATTERN: &str = r"^arn:aws[\w-]*:kms:(.+):[0-9]+:(key|alias)/.+$";
/// STS limits `RoleSessionName` to 64 characters; sops truncates to 64 bytes.
const SESSION_NAME_LIMIT: usize = 64;

/// One AWS KMS master key: what a `kms` entry stores besides `enc` and `created_at`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KmsKey {
    pub arn: String,
    /// IAM role ARN to assume first, or empty.
    pub role: String,
    /// The KMS encryption context, `(key, value)` pairs with unique keys.
    pub context: Vec<(String, String)>,
    /// Shared-config profile, or empty for the default chain.
    pub aws_profile: String,
}

impl KmsKey {
    /// Parses `arn[+role_arn]` as sops does: spaces are removed, and the role starts at the first
    /// `+arn:`. The ARN itself is checked when the key is used ([`KmsKey::region`]).
    pub fn parse(text: &str, context: &[(String, String)], aws_profile: &str) -> KmsKey {
        let text: String = text.chars().filter(|c| *c != ' ').collect();
        let (arn, role) = match text.find("+arn:") {
            Some(at) if at > 0 => (text[..at].to_string(), text[at + 1..].to_string()),
            _ => (text, String::new()),
        };
        KmsKey {
            arn,
            role,
            context: context.to_vec(),
            aws_profile: aws_profile.to_string(),
        }
    }

    /// The key from a file's `kms` entry; `None` for other entries.
    pub fn from_entry(entry: &KeyEntry) -> Option<KmsKey> {
        match entry {
            KeyEntry::Kms {
                arn,
                role,
                context,
                aws_profile,
                ..
            } => Some(KmsKey {
                arn: arn.clone(),
                role: role.clone(),
                context: context.clone(),
                aws_profile: aws_profile.clone(),
            }),
            _ => None,
        }
    }

    /// `arn[+role]`, as `KeyEntry::name` spells it.
    pub fn name(&self) -> String {
        if self.role.is_empty() {
            self.arn.clone()
        } else {
            format!("{}+{}", self.arn, self.role)
        }
    }

    /// The region named in the ARN, or why the ARN is not a KMS key ARN.
    pub fn region(&self) -> Result<String, String> {
        static ARN: OnceLock<Regex> = OnceLock::new();
        let arn = ARN.get_or_init(|| Regex::new(ARN_PATTERN).expect("static regex"));
        arn.captures(&self.arn)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_string())
            .ok_or_else(|| {
                format!(
                    "no valid ARN found in {:?} (expected arn:aws:kms:REGION:ACCOUNT:key/ID \
                     or …:alias/NAME)",
                    self.arn
                )
            })
    }

    fn error(&self, reason: impl Into<String>) -> KeyError {
        KeyError {
            kind: KIND,
            name: self.name(),
            reason: reason.into(),
        }
    }
}

/// `--encryption-context` that is not `key:value[,key:value…]` (sops exit 6).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Invalid KMS encryption context format: {0:?} is not key:value")]
pub struct ContextFormatError(pub String);

/// Parses `key:value,key:value` as sops does: each item must split into exactly two parts at
/// `:`; an empty text is no context. A repeated key keeps its last value.
pub fn parse_context(text: &str) -> Result<Vec<(String, String)>, ContextFormatError> {
    let mut context: Vec<(String, String)> = Vec::new();
    if text.is_empty() {
        return Ok(context);
    }
    for item in text.split(',') {
        let parts: Vec<&str> = item.split(':').collect();
        let [key, value] = parts[..] else {
            return Err(ContextFormatError(item.to_string()));
        };
        context.retain(|(k, _)| k != key);
        context.push((key.to_string(), value.to_string()));
    }
    Ok(context)
}

/// A comma-separated `arn[+role]` list (`--kms`, `SOPS_KMS_ARN`, a rule's flat `kms`), each
/// item with its spaces removed, empty items dropped.
pub fn split_arns(text: &str) -> Vec<String> {
    text.split(',')
        .map(|s| s.chars().filter(|c| *c != ' ').collect::<String>())
        .filter(|s| !s.is_empty())
        .collect()
}

/// sops' STS session name for `hostname`: `sops@` + the hostname without characters outside
/// `[a-zA-Z0-9=,.@_-]`, truncated to 64 characters.
pub fn session_name(hostname: &str) -> String {
    let clean: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '=' | ',' | '.' | '@' | '_' | '-'))
        .collect();
    let mut name = format!("sops@{clean}");
    name.truncate(SESSION_NAME_LIMIT);
    name
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The service's code and message for a failed call (never the request, so never key material);
/// a call that got no answer says the service is unreachable.
fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match err {
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            return format!("AWS KMS is unreachable: {}", super::error_chain(err))
        }
        SdkError::TimeoutError(_) => {
            return format!(
                "AWS KMS is unreachable: no answer in time ({})",
                super::error_chain(err)
            )
        }
        _ => {}
    }
    match err.as_service_error() {
        Some(service) => match (service.code(), service.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_string(),
            _ => super::error_chain(err),
        },
        None => super::error_chain(err),
    }
}

/// The process' runtime and clients, made on first use.
struct Kms {
    runtime: tokio::runtime::Runtime,
    /// By (region, profile, role).
    clients: Mutex<HashMap<(String, String, String), aws_sdk_kms::Client>>,
}

fn kms() -> Result<&'static Kms, String> {
    static KMS: OnceLock<Result<Kms, String>> = OnceLock::new();
    KMS.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| Kms {
                runtime,
                clients: Mutex::new(HashMap::new()),
            })
            .map_err(|e| format!("cannot start the AWS client runtime: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

impl Kms {
    /// A client for the key's region, profile and role (assuming the role now, once).
    fn client(&self, key: &KmsKey) -> Result<aws_sdk_kms::Client, String> {
        let region = key.region()?;
        let id = (region.clone(), key.aws_profile.clone(), key.role.clone());
        if let Some(client) = self.clients.lock().ok().and_then(|c| c.get(&id).cloned()) {
            return Ok(client);
        }
        let timeouts = net::timeouts()?;
        let client = self.runtime.block_on(async {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new(region.clone()))
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(timeouts.connect)
                        .read_timeout(timeouts.read)
                        .operation_attempt_timeout(timeouts.read)
                        .build(),
                )
                .retry_config(
                    RetryConfig::standard()
                        .with_max_attempts(net::ATTEMPTS)
                        .with_initial_backoff(net::backoff(2))
                        .with_max_backoff(net::backoff(u32::MAX)),
                );
            if !key.aws_profile.is_empty() {
                loader = loader.profile_name(&key.aws_profile);
            }
            let sdk = loader.load().await;
            let mut config = aws_sdk_kms::config::Builder::from(&sdk);
            if !key.role.is_empty() {
                let provider = AssumeRoleProvider::builder(&key.role)
                    .session_name(session_name(&hostname()))
                    .region(Region::new(region))
                    .configure(&sdk)
                    .build()
                    .await;
                let credentials = provider.provide_credentials().await.map_err(|e| {
                    format!(
                        "failed to assume role {:?}: {}",
                        key.role,
                        super::error_chain(&e)
                    )
                })?;
                config = config.credentials_provider(credentials);
            }
            Ok::<_, String>(aws_sdk_kms::Client::from_conf(config.build()))
        })?;
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(id, client.clone());
        }
        Ok(client)
    }

    fn context(key: &KmsKey) -> Option<HashMap<String, String>> {
        (!key.context.is_empty()).then(|| key.context.iter().cloned().collect())
    }

    fn encrypt(&self, key: &KmsKey, part: &KeyPart) -> Result<String, String> {
        let client = self.client(key)?;
        let request = client
            .encrypt()
            .key_id(&key.arn)
            .plaintext(Blob::new(part.as_bytes().to_vec()))
            .set_encryption_context(Self::context(key));
        let output = self.runtime.block_on(request.send()).map_err(|e| {
            format!(
                "failed to encrypt sops data key with AWS KMS: {}",
                describe(&e)
            )
        })?;
        match output.ciphertext_blob() {
            Some(blob) if !blob.as_ref().is_empty() => Ok(STANDARD.encode(blob.as_ref())),
            _ => Err("AWS KMS returned no ciphertext".into()),
        }
    }

    fn decrypt(&self, key: &KmsKey, enc: &str) -> Result<KeyPart, String> {
        let blob = STANDARD
            .decode(enc.trim())
            .map_err(|e| format!("error base64-decoding encrypted data key: {e}"))?;
        let client = self.client(key)?;
        let request = client
            .decrypt()
            .key_id(&key.arn)
            .ciphertext_blob(Blob::new(blob))
            .set_encryption_context(Self::context(key));
        let output = self.runtime.block_on(request.send()).map_err(|e| {
            format!(
                "failed to decrypt sops data key with AWS KMS: {}",
                describe(&e)
            )
        })?;
        output
            .plaintext
            .map(|blob| KeyPart::new(blob.into_inner()))
            .ok_or_else(|| "AWS KMS returned no plaintext".into())
    }
}

/// A KMS key to wrap the data key (or a share) with.
pub struct KmsRecipient {
    key: KmsKey,
}

impl KmsRecipient {
    /// Parses `arn[+role]` with the context and profile that apply to it; refuses an ARN that
    /// is not a KMS key or alias ARN.
    pub fn parse(
        text: &str,
        context: &[(String, String)],
        aws_profile: &str,
    ) -> Result<KmsRecipient, KeyError> {
        KmsRecipient::new(KmsKey::parse(text, context, aws_profile))
    }

    /// A recipient for a key already known (from `.sops.yaml` or a file's metadata).
    pub fn new(key: KmsKey) -> Result<KmsRecipient, KeyError> {
        key.region().map_err(|reason| key.error(reason))?;
        Ok(KmsRecipient { key })
    }
}

impl Recipient for KmsRecipient {
    fn wrap(&self, part: &KeyPart) -> Result<KeyEntry, KeyError> {
        let enc = kms()
            .and_then(|kms| kms.encrypt(&self.key, part))
            .map_err(|reason| self.key.error(reason))?;
        Ok(KeyEntry::Kms {
            arn: self.key.arn.clone(),
            role: self.key.role.clone(),
            context: self.key.context.clone(),
            created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            enc,
            aws_profile: self.key.aws_profile.clone(),
        })
    }

    fn name(&self) -> String {
        self.key.name()
    }
}

/// Opens `kms` entries through AWS KMS with the credentials the SDK finds.
#[derive(Default)]
pub struct KmsIdentity {}

impl KmsIdentity {
    /// The SDK reads this process' environment and AWS config files itself.
    pub fn from_process_env() -> KmsIdentity {
        KmsIdentity {}
    }
}

impl Identity for KmsIdentity {
    fn unwrap(&self, entry: &KeyEntry) -> Option<Result<KeyPart, KeyError>> {
        let key = KmsKey::from_entry(entry)?;
        let KeyEntry::Kms { enc, .. } = entry else {
            return None;
        };
        Some(
            kms()
                .and_then(|kms| kms.decrypt(&key, enc))
                .map_err(|reason| key.error(reason)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_and_role_split_at_the_first_plus_arn() {
        let key = KmsKey::parse(
            " arn:aws:kms:eu-west-1:123456789012:key/abc +arn:aws:iam::123456789012:role/r",
            &[],
            "dev",
        );
        assert_eq!(key.arn, "arn:aws:kms:eu-west-1:123456789012:key/abc");
        assert_eq!(key.role, "arn:aws:iam::123456789012:role/r");
        assert_eq!(key.aws_profile, "dev");
        assert_eq!(key.region().unwrap(), "eu-west-1");
        assert_eq!(
            key.name(),
            "arn:aws:kms:eu-west-1:123456789012:key/abc+arn:aws:iam::123456789012:role/r"
        );
        let plain = KmsKey::parse("arn:aws:kms:us-east-1:1:alias/x", &[], "");
        assert_eq!(plain.role, "");
        assert_eq!(plain.region().unwrap(), "us-east-1");
    }

    #[test]
    fn region_comes_from_the_arn_and_bad_arns_are_refused() {
        let gov = KmsKey::parse("arn:aws-us-gov:kms:us-gov-west-1:1:key/k", &[], "");
        assert_eq!(gov.region().unwrap(), "us-gov-west-1");
        for bad in [
            "",
            "key/abc",
            "arn:aws:s3:::bucket",
            "arn:aws:kms:eu:acct:key/k",
        ] {
            let key = KmsKey::parse(bad, &[], "");
            assert!(key.region().is_err(), "{bad}");
            assert!(KmsRecipient::new(key).is_err(), "{bad}");
        }
    }

    #[test]
    fn context_parses_as_sops_does() {
        assert_eq!(parse_context("").unwrap(), vec![]);
        assert_eq!(
            parse_context("a:1,b:two,a:3").unwrap(),
            vec![("b".into(), "two".into()), ("a".into(), "3".into())]
        );
        assert_eq!(parse_context("a:1,b"), Err(ContextFormatError("b".into())));
        assert!(parse_context("url:http://x").is_err());
        assert!(parse_context("a:1,").is_err());
    }

    #[test]
    fn arn_lists_drop_spaces_and_empty_items() {
        assert_eq!(
            split_arns(" arn:a , arn: b,,"),
            vec!["arn:a".to_string(), "arn:b".to_string()]
        );
    }

    #[test]
    fn session_names_are_sanitised_and_truncated() {
        assert_eq!(session_name("my host!.example"), "sops@myhost.example");
        let long = session_name(&"h".repeat(100));
        assert_eq!(long.len(), 64);
        assert!(long.starts_with("sops@hhh"));
    }

    #[test]
    fn entries_of_other_kinds_are_not_claimed() {
        let entry = KeyEntry::Age {
            recipient: "age1x".into(),
            enc: "e".into(),
        };
        assert!(KmsIdentity::from_process_env().unwrap(&entry).is_none());
    }

    #[test]
    fn undecodable_enc_fails_without_a_request() {
        let entry = KeyEntry::Kms {
            arn: "arn:aws:kms:us-east-1:1:key/k".into(),
            role: String::new(),
            context: vec![],
            created_at: "2026-01-01T00:00:00Z".into(),
            enc: "%%%".into(),
            aws_profile: String::new(),
        };
        let err = match KmsIdentity::from_process_env().unwrap(&entry) {
            Some(Err(e)) => e,
            _ => panic!("expected an error"),
        };
        assert_eq!(err.name, "arn:aws:kms:us-east-1:1:key/k");
        assert!(err.reason.contains("base64"), "{}", err.reason);
    }
}
