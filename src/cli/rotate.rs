//! `veil rotate FILE`: a new data key, every value encrypted again under it, with recipients
//! added (`--add-age`, `--add-pgp`, to the first group) or removed (`--rm-…`, from every group).
//!
//! The file is opened before anything is written, so a user who cannot decrypt it gets an error
//! and an untouched file, never an empty one (sops #484).

use std::path::PathBuf;

use clap::Args;
use veil::document::{self, EncryptPlan, OpenOptions};

use super::args::FormatArgs;
use super::io::{Input, Output};
use super::{in_file, CliResult, Code, Failure, GlobalArgs};

#[derive(Args, Debug, Default)]
pub struct KeyChangeArgs {
    /// Add these age recipients (comma-separated) to the first key group
    #[arg(long)]
    pub add_age: Option<String>,
    /// Remove these age recipients from every key group
    #[arg(long)]
    pub rm_age: Option<String>,
    /// Add these PGP fingerprints to the first key group
    #[arg(long)]
    pub add_pgp: Option<String>,
    /// Remove these PGP fingerprints from every key group
    #[arg(long)]
    pub rm_pgp: Option<String>,
    /// Add these PKCS#11 URIs (comma-separated) to the first key group
    #[arg(long)]
    pub add_pkcs11: Option<String>,
    /// Remove these PKCS#11 URIs from every key group
    #[arg(long)]
    pub rm_pkcs11: Option<String>,
    /// Add these AWS KMS ARNs (comma-separated, each optionally +ROLE_ARN) to the first key group
    #[arg(long, hide = cfg!(not(feature = "aws")))]
    pub add_kms: Option<String>,
    /// Remove these AWS KMS ARNs (ARN[+ROLE_ARN]) from every key group
    #[arg(long, hide = cfg!(not(feature = "aws")))]
    pub rm_kms: Option<String>,
    /// Add these GCP KMS resource IDs (comma-separated) to the first key group
    #[arg(long, hide = cfg!(not(feature = "gcp")))]
    pub add_gcp_kms: Option<String>,
    /// Remove these GCP KMS resource IDs from every key group
    #[arg(long, hide = cfg!(not(feature = "gcp")))]
    pub rm_gcp_kms: Option<String>,
    /// Add these Azure Key Vault key URLs (comma-separated) to the first key group
    #[arg(long, hide = cfg!(not(feature = "azure")))]
    pub add_azure_kv: Option<String>,
    /// Remove these Azure Key Vault key URLs (without a version: every version) from every key
    /// group
    #[arg(long, hide = cfg!(not(feature = "azure")))]
    pub rm_azure_kv: Option<String>,
    // HuaweiCloud keys are not available yet.
    /// Add these Vault transit key URIs (comma-separated) to the first key group
    #[arg(long, hide = cfg!(not(feature = "vault")))]
    pub add_hc_vault_transit: Option<String>,
    /// Remove these Vault transit key URIs from every key group
    #[arg(long, hide = cfg!(not(feature = "vault")))]
    pub rm_hc_vault_transit: Option<String>,
    #[arg(long, hide = true)]
    pub add_hckms: Option<String>,
    #[arg(long, hide = true)]
    pub rm_hckms: Option<String>,
}

impl KeyChangeArgs {
    pub fn any(&self) -> bool {
        self.add_age.is_some()
            || self.rm_age.is_some()
            || self.add_pgp.is_some()
            || self.rm_pgp.is_some()
            || self.add_pkcs11.is_some()
            || self.rm_pkcs11.is_some()
            || self.cloud().is_some()
            || self.add_hc_vault_transit.is_some()
            || self.rm_hc_vault_transit.is_some()
            || self.add_kms.is_some()
            || self.rm_kms.is_some()
            || self.add_gcp_kms.is_some()
            || self.rm_gcp_kms.is_some()
            || self.add_azure_kv.is_some()
            || self.rm_azure_kv.is_some()
    }

    /// The first cloud key flag given, which this build cannot act on.
    fn cloud(&self) -> Option<&'static str> {
        [
            #[cfg(not(feature = "aws"))]
            (&self.add_kms, "--add-kms"),
            #[cfg(not(feature = "aws"))]
            (&self.rm_kms, "--rm-kms"),
            #[cfg(not(feature = "gcp"))]
            (&self.add_gcp_kms, "--add-gcp-kms"),
            #[cfg(not(feature = "gcp"))]
            (&self.rm_gcp_kms, "--rm-gcp-kms"),
            #[cfg(not(feature = "azure"))]
            (&self.add_azure_kv, "--add-azure-kv"),
            #[cfg(not(feature = "azure"))]
            (&self.rm_azure_kv, "--rm-azure-kv"),
            #[cfg(not(feature = "vault"))]
            (&self.add_hc_vault_transit, "--add-hc-vault-transit"),
            #[cfg(not(feature = "vault"))]
            (&self.rm_hc_vault_transit, "--rm-hc-vault-transit"),
            (&self.add_hckms, "--add-hckms"),
            (&self.rm_hckms, "--rm-hckms"),
        ]
        .into_iter()
        .find_map(|(value, flag)| value.as_ref().map(|_| flag))
    }

    fn removed(&self) -> Vec<String> {
        [&self.rm_age, &self.rm_pgp]
            .into_iter()
            .flatten()
            .flat_map(|list| list.split(','))
            .map(|item| item.trim().replace(' ', ""))
            .filter(|item| !item.is_empty())
            .collect()
    }
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// Write the result back to FILE
    #[arg(short = 'i', long)]
    pub in_place: bool,
    /// Write the result to this file
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub keys: KeyChangeArgs,
    /// Key types to try first, e.g. age,pgp (env SOPS_DECRYPTION_ORDER); offline keys (age, pgp,
    /// pkcs11) still go before network keys
    #[arg(long)]
    pub decryption_order: Option<String>,
    /// Open even if the MAC does not match
    #[arg(long)]
    pub ignore_mac: bool,
    #[command(flatten)]
    pub format: FormatArgs,
    /// The encrypted file
    pub file: PathBuf,
}

pub fn run(args: RotateArgs, global: &GlobalArgs) -> CliResult {
    let input = Input::from_arg(Some(&args.file));
    let output = Output::choose(&input, args.in_place, args.output.as_deref())?;
    if let Input::File(path) = &input {
        if !path.exists() && args.keys.any() {
            return Err(Failure::new(
                Code::CannotChangeKeysFromNonExistentFile,
                format!(
                    "Error: cannot add or remove keys on non-existent file {:?}",
                    path.display().to_string()
                ),
            ));
        }
    }
    input.require_existing()?;
    if let Some(flag) = args.keys.cloud() {
        return Err(Failure::new(
            Code::Generic,
            format!("{flag}: these keys are not available in this build of veil"),
        ));
    }
    let in_format = super::input_format(&args.format, &input)?;
    let out_format = super::output_format(&args.format, &input, in_format)?;
    let config = super::load_config(global)?;
    let keyring = super::keys::keyring(args.decryption_order.as_deref())?;
    let loaded = super::load_encrypted(&input, in_format)?;
    let options = OpenOptions {
        ignore_mac: args.ignore_mac,
        remember_ivs: false,
    };
    let opened = document::open(loaded, &keyring, options)
        .map_err(|e| super::decrypt::open_failure(&input, e))?;
    let mut removed = args.keys.removed();
    removed.extend(super::keys::vault_entry_names(
        args.keys.rm_hc_vault_transit.as_deref(),
    ));
    removed.extend(super::keys::kms_entry_names(args.keys.rm_kms.as_deref()));
    removed.extend(super::keys::gcp_kms_ids(args.keys.rm_gcp_kms.as_deref()));
    let mut groups = opened.metadata.key_groups.clone();
    for group in &mut groups {
        group.keys.retain(|entry| !removed.contains(&entry.name()));
        group
            .keys
            .retain(|entry| !super::keys::is_listed_pkcs11(entry, args.keys.rm_pkcs11.as_deref()));
        group.keys.retain(|entry| {
            !super::keys::is_listed_azure_kv(entry, args.keys.rm_azure_kv.as_deref())
        });
    }
    let mut recipients = super::keys::recipients_of(&groups)?;
    let mut added =
        super::keys::listed_recipients(args.keys.add_age.as_deref(), args.keys.add_pgp.as_deref())?;
    added.extend(super::keys::listed_pkcs11(args.keys.add_pkcs11.as_deref())?);
    added.extend(super::keys::listed_vault_recipients(
        args.keys.add_hc_vault_transit.as_deref(),
    )?);
    added.extend(super::keys::listed_kms_recipients(
        args.keys.add_kms.as_deref(),
    )?);
    added.extend(super::keys::listed_gcp_kms_recipients(
        args.keys.add_gcp_kms.as_deref(),
    )?);
    added.extend(super::keys::listed_azure_kv_recipients(
        args.keys.add_azure_kv.as_deref(),
    )?);
    match recipients.first_mut() {
        Some(first) => first.extend(added),
        None => recipients.push(added),
    }
    recipients.retain(|group| !group.is_empty());
    let plan = EncryptPlan {
        groups: recipients,
        shamir_threshold: opened.metadata.shamir_threshold,
        rules: opened.metadata.rules.clone(),
    };
    let mut tree = opened.tree;
    let metadata = document::encrypt(&mut tree, &plan).map_err(|e| {
        let failure = Failure::new(Code::Generic, in_file(&input, &e));
        match e {
            document::DocumentError::NoRecipients => {
                failure.with_hint("a rotation must leave at least one key")
            }
            _ => failure,
        }
    })?;
    let text = super::emit_encrypted(
        &input,
        out_format,
        &tree,
        &metadata,
        config.as_ref(),
        global,
    )?;
    output.write(&text)
}
