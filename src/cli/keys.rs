//! Turning flags, environment and `.sops.yaml` into recipients (for new data keys) and a keyring
//! (for opening files).

use veil::config::{CreationRule, GroupSpec};
use veil::crypt::{Rules, Selector};
use veil::document::EncryptPlan;
use veil::keys::keyring::{DecryptionOrder, Keyring};
use veil::keys::{Identity, KeyEntry, Recipient};
use veil::metadata::KeyGroup;

use super::args::{RecipientArgs, SelectorArgs};
use super::{env, CliResult, Code, Failure, GlobalArgs};

/// Flag value, else environment variable.
fn flag_or_env(flag: &Option<String>, var: &str) -> Option<String> {
    flag.clone().filter(|v| !v.is_empty()).or_else(|| env(var))
}

/// A comma-separated list, each item trimmed. Spaces inside an item stay: an SSH recipient is
/// `ssh-ed25519 AAAA… comment`; PGP fingerprints drop their spaces in `PgpRecipient::new`.
fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn key_failure(err: impl std::fmt::Display) -> Failure {
    Failure::new(Code::Generic, format!("Could not generate data key: {err}"))
}

/// Each item made into a recipient by `make`; the first that cannot be is the error.
fn recipients_from<T, R: Recipient + 'static, E: std::fmt::Display>(
    items: &[T],
    make: impl Fn(&T) -> Result<R, E>,
) -> CliResult<Vec<Box<dyn Recipient>>> {
    items
        .iter()
        .map(|item| {
            make(item)
                .map(|r| Box::new(r) as Box<dyn Recipient>)
                .map_err(key_failure)
        })
        .collect()
}

/// For a key type this build lacks: no key is fine, any key is refused.
#[cfg(not(all(feature = "aws", feature = "azure", feature = "gcp", feature = "vault")))]
fn none_or_unsupported<T>(items: &[T], kind: &str) -> CliResult<Vec<Box<dyn Recipient>>> {
    match items.first() {
        Some(_) => Err(unsupported(kind)),
        None => Ok(Vec::new()),
    }
}

fn age_recipients(items: &[String]) -> CliResult<Vec<Box<dyn Recipient>>> {
    recipients_from(items, |r| veil::keys::age::AgeRecipient::parse(r))
}

fn pgp_recipients(items: &[String]) -> Vec<Box<dyn Recipient>> {
    items
        .iter()
        .map(|fp| Box::new(veil::keys::pgp::PgpRecipient::new(fp)) as Box<dyn Recipient>)
        .collect()
}

fn pkcs11_recipients(items: &[String]) -> CliResult<Vec<Box<dyn Recipient>>> {
    recipients_from(items, |uri| veil::keys::pkcs11::Pkcs11Recipient::parse(uri))
}

/// PKCS#11 recipients from a `URI[,URI…]` flag value.
pub fn listed_pkcs11(uris: Option<&str>) -> CliResult<Vec<Box<dyn Recipient>>> {
    pkcs11_recipients(&uris.map(veil::keys::pkcs11::split_uris).unwrap_or_default())
}

/// Whether `entry` is a PKCS#11 key named in the `URI[,URI…]` list (however the URI is written,
/// with or without a pin-value).
pub fn is_listed_pkcs11(entry: &KeyEntry, uris: Option<&str>) -> bool {
    use veil::keys::pkcs11::{split_uris, Pkcs11Uri};
    let KeyEntry::Pkcs11 { uri, .. } = entry else {
        return false;
    };
    let Ok(stored) = Pkcs11Uri::parse(uri) else {
        return false;
    };
    split_uris(uris.unwrap_or_default())
        .iter()
        .any(|u| Pkcs11Uri::parse(u).is_ok_and(|u| u.same_key(&stored)))
}

/// A key source this build cannot use: one left out with `--no-default-features`, or one veil
/// does not have at all (HuaweiCloud KMS).
fn unsupported(kind: &str) -> Failure {
    Failure::new(
        Code::Generic,
        format!("{kind} keys are not available in this build of veil"),
    )
    .with_hint("every key source sops has except HuaweiCloud is in veil's default build (cargo install veil); age and PGP work in every build")
}

/// Vault transit recipients from key URIs; without the `vault` feature any URI is refused.
#[cfg(feature = "vault")]
fn vault_recipients(items: &[String], _kind: &str) -> CliResult<Vec<Box<dyn Recipient>>> {
    recipients_from(items, |uri| veil::keys::vault::VaultRecipient::parse(uri))
}

#[cfg(not(feature = "vault"))]
fn vault_recipients(items: &[String], kind: &str) -> CliResult<Vec<Box<dyn Recipient>>> {
    none_or_unsupported(items, kind)
}

/// AWS KMS recipients from `arn[+role]` items sharing one context and profile.
#[cfg(feature = "aws")]
fn kms_recipients(
    items: &[String],
    context: &[(String, String)],
    aws_profile: &str,
) -> CliResult<Vec<Box<dyn Recipient>>> {
    recipients_from(items, |arn| {
        veil::keys::aws::KmsRecipient::parse(arn, context, aws_profile)
    })
}

/// Recipients of a rule's `kms` keys; without the `aws` feature any key is refused.
#[cfg(feature = "aws")]
fn kms_spec_recipients(specs: &[veil::config::KmsSpec]) -> CliResult<Vec<Box<dyn Recipient>>> {
    specs
        .iter()
        .map(|spec| {
            veil::keys::aws::KmsRecipient::new(veil::keys::aws::KmsKey {
                arn: spec.arn.clone(),
                role: spec.role.clone(),
                context: spec.context.clone(),
                aws_profile: spec.aws_profile.clone(),
            })
            .map(|r| Box::new(r) as Box<dyn Recipient>)
            .map_err(key_failure)
        })
        .collect()
}

#[cfg(not(feature = "aws"))]
fn kms_spec_recipients(specs: &[veil::config::KmsSpec]) -> CliResult<Vec<Box<dyn Recipient>>> {
    none_or_unsupported(specs, "kms")
}

/// `--kms` / `SOPS_KMS_ARN` keys with `--encryption-context` (exit 6 when malformed) and
/// `--aws-profile`.
#[cfg(feature = "aws")]
fn flag_kms_recipients(recipients: &RecipientArgs) -> CliResult<Vec<Box<dyn Recipient>>> {
    let context = veil::keys::aws::parse_context(
        recipients.encryption_context.as_deref().unwrap_or_default(),
    )
    .map_err(|e| Failure::new(Code::InvalidKmsEncryptionContextFormat, e))?;
    let arns = flag_or_env(&recipients.kms, "SOPS_KMS_ARN")
        .map(|s| veil::keys::aws::split_arns(&s))
        .unwrap_or_default();
    kms_recipients(
        &arns,
        &context,
        recipients.aws_profile.as_deref().unwrap_or_default(),
    )
}

#[cfg(not(feature = "aws"))]
fn flag_kms_recipients(_recipients: &RecipientArgs) -> CliResult<Vec<Box<dyn Recipient>>> {
    Ok(Vec::new())
}

/// Recipients for `rotate --add-kms` and `groups add --kms` (`arn[+role]`, comma-separated; no
/// context, default profile).
#[cfg(feature = "aws")]
pub fn listed_kms_recipients(arns: Option<&str>) -> CliResult<Vec<Box<dyn Recipient>>> {
    kms_recipients(
        &arns.map(veil::keys::aws::split_arns).unwrap_or_default(),
        &[],
        "",
    )
}

#[cfg(not(feature = "aws"))]
pub fn listed_kms_recipients(arns: Option<&str>) -> CliResult<Vec<Box<dyn Recipient>>> {
    match arns.filter(|a| !a.trim().is_empty()) {
        Some(_) => Err(unsupported("AWS KMS")),
        None => Ok(Vec::new()),
    }
}

/// GCP KMS recipients from resource IDs; without the `gcp` feature any ID is refused.
#[cfg(feature = "gcp")]
fn gcp_kms_recipients(items: &[String]) -> CliResult<Vec<Box<dyn Recipient>>> {
    recipients_from(items, |id| veil::keys::gcp::GcpKmsRecipient::parse(id))
}

#[cfg(not(feature = "gcp"))]
fn gcp_kms_recipients(items: &[String]) -> CliResult<Vec<Box<dyn Recipient>>> {
    none_or_unsupported(items, "GCP KMS")
}

/// Comma-separated GCP KMS resource IDs, spaces removed (`--gcp-kms`, `SOPS_GCP_KMS_IDS`,
/// `rotate --add-gcp-kms/--rm-gcp-kms`, `groups add --gcp-kms`).
pub fn gcp_kms_ids(text: Option<&str>) -> Vec<String> {
    text.map(|text| {
        text.split(',')
            .map(|s| s.replace(' ', ""))
            .filter(|s| !s.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

/// Recipients for `rotate --add-gcp-kms` and `groups add --gcp-kms`.
pub fn listed_gcp_kms_recipients(ids: Option<&str>) -> CliResult<Vec<Box<dyn Recipient>>> {
    gcp_kms_recipients(&gcp_kms_ids(ids))
}

/// Azure Key Vault recipients from key URLs; without the `azure` feature any URL is refused.
#[cfg(feature = "azure")]
fn azure_kv_recipients(items: &[String]) -> CliResult<Vec<Box<dyn Recipient>>> {
    recipients_from(items, |url| veil::keys::azure::AzureKvRecipient::parse(url))
}

#[cfg(not(feature = "azure"))]
fn azure_kv_recipients(items: &[String]) -> CliResult<Vec<Box<dyn Recipient>>> {
    none_or_unsupported(items, "Azure Key Vault")
}

/// Recipients of a rule's `azure_keyvault` keys (URLs, or `{vaultUrl, key, version}` maps).
#[cfg(feature = "azure")]
fn azure_kv_spec_recipients(
    specs: &[veil::config::AzureKvSpec],
) -> CliResult<Vec<Box<dyn Recipient>>> {
    use veil::config::AzureKvSpec;
    use veil::keys::azure::{AzureKvKey, AzureKvRecipient};
    specs
        .iter()
        .map(|spec| {
            let key = match spec {
                AzureKvSpec::Url(url) => AzureKvKey::parse(url),
                AzureKvSpec::Parts {
                    vault_url,
                    key,
                    version,
                } => AzureKvKey::from_parts(vault_url, key, version),
            };
            key.map(|key| Box::new(AzureKvRecipient::new(key)) as Box<dyn Recipient>)
                .map_err(key_failure)
        })
        .collect()
}

#[cfg(not(feature = "azure"))]
fn azure_kv_spec_recipients(
    specs: &[veil::config::AzureKvSpec],
) -> CliResult<Vec<Box<dyn Recipient>>> {
    none_or_unsupported(specs, "Azure Key Vault")
}

/// Recipients for `rotate --add-azure-kv` and `groups add --azure-kv` (comma-separated URLs).
pub fn listed_azure_kv_recipients(urls: Option<&str>) -> CliResult<Vec<Box<dyn Recipient>>> {
    azure_kv_recipients(&urls.map(split_list).unwrap_or_default())
}

/// Whether `entry` is an Azure Key Vault key named in the comma-separated URL list of
/// `rotate --rm-azure-kv`: a URL without a version names every version of that key.
#[cfg(feature = "azure")]
pub fn is_listed_azure_kv(entry: &KeyEntry, urls: Option<&str>) -> bool {
    split_list(urls.unwrap_or_default())
        .iter()
        .any(|url| veil::keys::azure::AzureKvKey::parse(url).is_ok_and(|key| key.matches(entry)))
}

#[cfg(not(feature = "azure"))]
pub fn is_listed_azure_kv(_entry: &KeyEntry, _urls: Option<&str>) -> bool {
    false
}

/// The entry names (`arn[+role]`) of `rotate --rm-kms` items.
pub fn kms_entry_names(arns: Option<&str>) -> Vec<String> {
    arns.map(|text| {
        text.split(',')
            .map(|s| s.replace(' ', ""))
            .filter(|s| !s.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

fn group_recipients(group: &GroupSpec) -> CliResult<Vec<Box<dyn Recipient>>> {
    if let Some((kind, _)) = group.unsupported.first() {
        return Err(unsupported(kind));
    }
    let name_of = |key: &str| {
        group
            .named
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n.clone())
    };
    let mut recipients = Vec::new();
    for key in &group.age {
        let parsed =
            veil::keys::age::AgeRecipient::parse(key).map_err(|err| match name_of(key) {
                Some(name) => key_failure(format!("{name}: {err}")),
                None => key_failure(err),
            })?;
        recipients.push(Box::new(parsed) as Box<dyn Recipient>);
    }
    recipients.extend(pgp_recipients(&group.pgp));
    recipients.extend(pkcs11_recipients(&group.pkcs11)?);
    recipients.extend(vault_recipients(&group.vault, "hc_vault")?);
    recipients.extend(kms_spec_recipients(&group.kms)?);
    recipients.extend(gcp_kms_recipients(&group.gcp_kms)?);
    recipients.extend(azure_kv_spec_recipients(&group.azure_kv)?);
    Ok(recipients
        .into_iter()
        .map(|recipient| {
            let key = recipient.name();
            match group.named.iter().find(|(k, _)| *k == key) {
                Some((_, name)) => Box::new(Named {
                    name: name.clone(),
                    inner: recipient,
                }) as Box<dyn Recipient>,
                None => recipient,
            }
        })
        .collect())
}

/// A recipient the config's `recipients` section named: failures say whose key it is.
struct Named {
    name: String,
    inner: Box<dyn Recipient>,
}

impl Recipient for Named {
    fn wrap(&self, part: &veil::keys::KeyPart) -> Result<KeyEntry, veil::keys::KeyError> {
        self.inner.wrap(part).map_err(|mut err| {
            err.name = format!("{} ({})", self.name, err.name);
            err
        })
    }

    fn name(&self) -> String {
        self.inner.name()
    }
}

/// Recipients, threshold and selector for a new file: key flags (or their environment variables)
/// replace the rule's keys entirely; selector and threshold flags override the rule's.
pub fn encrypt_plan(
    recipients: &RecipientArgs,
    selectors: &SelectorArgs,
    global: &GlobalArgs,
    rule: Option<&CreationRule>,
    binary: bool,
) -> CliResult<EncryptPlan> {
    let age = flag_or_env(&recipients.age, "SOPS_AGE_RECIPIENTS")
        .map(|s| split_list(&s))
        .unwrap_or_default();
    let pgp = flag_or_env(&recipients.pgp, "SOPS_PGP_FP")
        .map(|s| split_list(&s))
        .unwrap_or_default();
    let pkcs11 = flag_or_env(&recipients.pkcs11, "VEIL_PKCS11_URIS")
        .map(|s| veil::keys::pkcs11::split_uris(&s))
        .unwrap_or_default();
    for (flag, var, kind) in [
        #[cfg(not(feature = "aws"))]
        (&recipients.kms, "SOPS_KMS_ARN", "AWS KMS"),
        #[cfg(not(feature = "gcp"))]
        (&recipients.gcp_kms, "SOPS_GCP_KMS_IDS", "GCP KMS"),
        #[cfg(not(feature = "azure"))]
        (
            &recipients.azure_kv,
            "SOPS_AZURE_KEYVAULT_URLS",
            "Azure Key Vault",
        ),
        #[cfg(not(feature = "vault"))]
        (
            &recipients.hc_vault_transit,
            "SOPS_VAULT_URIS",
            "HashiCorp Vault",
        ),
        (
            &recipients.hckms,
            "SOPS_HUAWEICLOUD_KMS_IDS",
            "HuaweiCloud KMS",
        ),
    ] {
        if flag_or_env(flag, var).is_some() {
            return Err(unsupported(kind));
        }
    }
    let vault = flag_or_env(&recipients.hc_vault_transit, "SOPS_VAULT_URIS")
        .map(|s| split_list(&s))
        .unwrap_or_default();
    let kms = flag_kms_recipients(recipients)?;
    let gcp_kms = gcp_kms_ids(flag_or_env(&recipients.gcp_kms, "SOPS_GCP_KMS_IDS").as_deref());
    let azure_kv = flag_or_env(&recipients.azure_kv, "SOPS_AZURE_KEYVAULT_URLS")
        .map(|s| split_list(&s))
        .unwrap_or_default();
    let groups = if !gcp_kms.is_empty()
        || !azure_kv.is_empty()
        || !age.is_empty()
        || !pgp.is_empty()
        || !pkcs11.is_empty()
        || !vault.is_empty()
        || !kms.is_empty()
    {
        let mut group = age_recipients(&age)?;
        group.extend(pgp_recipients(&pgp));
        group.extend(pkcs11_recipients(&pkcs11)?);
        group.extend(vault_recipients(&vault, "HashiCorp Vault")?);
        group.extend(kms);
        group.extend(gcp_kms_recipients(&gcp_kms)?);
        group.extend(azure_kv_recipients(&azure_kv)?);
        vec![group]
    } else if let Some(rule) = rule {
        rule.key_groups
            .iter()
            .filter(|g| !g.is_empty())
            .map(group_recipients)
            .collect::<CliResult<Vec<_>>>()?
    } else {
        Vec::new()
    };
    let shamir_threshold = recipients
        .shamir_secret_sharing_threshold
        .or(rule.map(|r| r.shamir_threshold))
        .unwrap_or(0);
    let rules = if binary {
        Rules {
            selector: None,
            mac_only_encrypted: false,
        }
    } else {
        Rules {
            selector: selector(selectors, global, rule)?,
            mac_only_encrypted: global.mac_only_encrypted
                || rule.is_some_and(|r| r.mac_only_encrypted),
        }
    };
    Ok(EncryptPlan {
        groups,
        shamir_threshold,
        rules,
    })
}

/// The one selector in effect. Each selector field is taken from the flag, else the rule; two
/// different fields set is an error (sops: "Cannot use more than one of …", exit 8).
fn selector(
    flags: &SelectorArgs,
    global: &GlobalArgs,
    rule: Option<&CreationRule>,
) -> CliResult<Option<Selector>> {
    let from_flags: Vec<Selector> = [
        ("unencrypted_suffix", &flags.unencrypted_suffix),
        ("encrypted_suffix", &flags.encrypted_suffix),
        ("unencrypted_regex", &flags.unencrypted_regex),
        ("encrypted_regex", &flags.encrypted_regex),
        (
            "unencrypted_comment_regex",
            &global.unencrypted_comment_regex,
        ),
        ("encrypted_comment_regex", &global.encrypted_comment_regex),
    ]
    .into_iter()
    .filter_map(|(field, value)| {
        value
            .as_deref()
            .filter(|v| !v.is_empty())
            .and_then(|v| Selector::from_field(field, v))
    })
    .collect();
    let mut chosen: Vec<Selector> = from_flags.clone();
    if let Some(rule_selector) = rule.and_then(|r| r.selector.clone()) {
        if !chosen.iter().any(|s| s.field() == rule_selector.field()) {
            chosen.push(rule_selector);
        }
    }
    if chosen.len() > 1 {
        let names: Vec<_> = chosen.iter().map(|s| s.field()).collect();
        return Err(Failure::new(
            Code::ConflictingParameters,
            format!(
                "Cannot use more than one of {} (from flags and .sops.yaml)",
                names.join(", ")
            ),
        ));
    }
    for s in &chosen {
        if let Selector::UnencryptedRegex(p)
        | Selector::EncryptedRegex(p)
        | Selector::UnencryptedCommentRegex(p)
        | Selector::EncryptedCommentRegex(p) = s
        {
            if !p.is_valid() {
                return Err(Failure::new(
                    Code::Generic,
                    format!(
                        "--{} {:?} is not a valid regular expression",
                        s.field().replace('_', "-"),
                        p.source
                    ),
                ));
            }
        }
    }
    Ok(chosen.pop().or(Rules::default().selector))
}

/// The identities this process has (age keys, gpg), and the order to try keys in.
pub fn keyring(order_flag: Option<&str>) -> CliResult<Keyring> {
    let order = match order_flag
        .map(String::from)
        .or_else(|| env("SOPS_DECRYPTION_ORDER"))
    {
        Some(text) => DecryptionOrder::parse(&text)
            .map_err(|e| Failure::new(Code::DuplicateDecryptionKeyType, e))?,
        None => DecryptionOrder::default(),
    };
    let mut identities: Vec<Box<dyn Identity>> = vec![
        Box::new(veil::keys::age::AgeIdentities::from_process_env()),
        Box::new(veil::keys::pgp::GpgIdentity::from_process_env()),
    ];
    identities.push(Box::new(
        veil::keys::pkcs11::Pkcs11Identity::from_process_env(),
    ));
    #[cfg(feature = "vault")]
    identities.push(Box::new(
        veil::keys::vault::VaultIdentity::from_process_env(),
    ));
    #[cfg(feature = "aws")]
    identities.push(Box::new(veil::keys::aws::KmsIdentity::from_process_env()));
    #[cfg(feature = "gcp")]
    identities.push(Box::new(veil::keys::gcp::GcpKmsIdentity::from_process_env()));
    #[cfg(feature = "azure")]
    identities.push(Box::new(
        veil::keys::azure::AzureKvIdentity::from_process_env(),
    ));
    Ok(Keyring::new(identities, order))
}

/// The recipient that wraps a new data key (or share) for an entry already in a file.
pub fn recipient_of(entry: &KeyEntry) -> CliResult<Box<dyn Recipient>> {
    match entry {
        KeyEntry::Age { recipient, .. } => veil::keys::age::AgeRecipient::parse(recipient)
            .map(|r| Box::new(r) as Box<dyn Recipient>)
            .map_err(key_failure),
        KeyEntry::Pgp { fp, .. } => Ok(Box::new(veil::keys::pgp::PgpRecipient::new(fp))),
        KeyEntry::Pkcs11 { uri, .. } => veil::keys::pkcs11::Pkcs11Recipient::parse(uri)
            .map(|r| Box::new(r) as Box<dyn Recipient>)
            .map_err(key_failure),
        #[cfg(feature = "vault")]
        KeyEntry::Vault {
            vault_address,
            engine_path,
            key_name,
            ..
        } => Ok(Box::new(veil::keys::vault::VaultRecipient::new(
            veil::keys::vault::TransitKey {
                address: vault_address.clone(),
                engine_path: engine_path.clone(),
                key_name: key_name.clone(),
            },
        ))),
        #[cfg(feature = "aws")]
        KeyEntry::Kms { .. } => veil::keys::aws::KmsKey::from_entry(entry)
            .ok_or_else(|| unsupported("kms"))
            .and_then(|key| veil::keys::aws::KmsRecipient::new(key).map_err(key_failure))
            .map(|r| Box::new(r) as Box<dyn Recipient>),
        #[cfg(feature = "gcp")]
        KeyEntry::GcpKms { resource_id, .. } => {
            veil::keys::gcp::GcpKmsRecipient::parse(resource_id)
                .map(|r| Box::new(r) as Box<dyn Recipient>)
                .map_err(key_failure)
        }
        #[cfg(feature = "azure")]
        KeyEntry::AzureKv { .. } => veil::keys::azure::AzureKvKey::from_entry(entry)
            .map(|(key, _)| {
                Box::new(veil::keys::azure::AzureKvRecipient::new(key)) as Box<dyn Recipient>
            })
            .ok_or_else(|| unsupported("azure_kv")),
        // Key types whose feature is off; with every feature on, none is left.
        #[allow(unreachable_patterns)]
        other => Err(unsupported(other.kind())),
    }
}

/// Recipients for every group of a file, in order. Lists of key types veil does not know
/// cannot be re-wrapped, so they stop the command rather than vanish from the file.
pub fn recipients_of(groups: &[KeyGroup]) -> CliResult<Vec<Vec<Box<dyn Recipient>>>> {
    groups
        .iter()
        .map(|group| {
            if let Some((kind, _)) = group.foreign.first() {
                return Err(unsupported(kind));
            }
            group.keys.iter().map(recipient_of).collect()
        })
        .collect()
}

/// Recipients of a creation rule's groups.
pub fn rule_groups(rule: &CreationRule) -> CliResult<Vec<Vec<Box<dyn Recipient>>>> {
    rule.key_groups
        .iter()
        .filter(|g| !g.is_empty())
        .map(group_recipients)
        .collect()
}

/// Age recipients and PGP fingerprints from comma-separated flag values.
pub fn listed_recipients(
    age: Option<&str>,
    pgp: Option<&str>,
) -> CliResult<Vec<Box<dyn Recipient>>> {
    let mut recipients = age_recipients(&age.map(split_list).unwrap_or_default())?;
    recipients.extend(pgp_recipients(&pgp.map(split_list).unwrap_or_default()));
    Ok(recipients)
}

/// Recipients for `rotate --add-hc-vault-transit` (comma-separated key URIs).
pub fn listed_vault_recipients(uris: Option<&str>) -> CliResult<Vec<Box<dyn Recipient>>> {
    vault_recipients(&uris.map(split_list).unwrap_or_default(), "HashiCorp Vault")
}

/// The entry names (`KeyEntry::name`) of comma-separated Vault key URIs, for
/// `rotate --rm-hc-vault-transit`; a URI that does not parse is kept as written.
#[cfg(feature = "vault")]
pub fn vault_entry_names(uris: Option<&str>) -> Vec<String> {
    uris.map(split_list)
        .unwrap_or_default()
        .into_iter()
        .map(|uri| match veil::keys::vault::TransitKey::parse(&uri) {
            Ok(key) => key.uri(),
            Err(_) => uri,
        })
        .collect()
}

#[cfg(not(feature = "vault"))]
pub fn vault_entry_names(uris: Option<&str>) -> Vec<String> {
    uris.map(split_list).unwrap_or_default()
}
