//! `veil groups add` and `veil groups delete`: change a file's key groups, splitting the same
//! data key into new Shamir shares for the new set of groups.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use veil::document;
use veil::metadata::Metadata;
use veil::store::Loaded;

use super::io::{Input, Output};
use super::{in_file, CliResult, Code, Failure, GlobalArgs};

#[derive(Subcommand, Debug)]
pub enum GroupsCommand {
    /// Add a key group made of the given recipients
    Add(AddArgs),
    /// Delete the key group at INDEX (0-based)
    Delete(DeleteArgs),
}

#[derive(Args, Debug)]
pub struct Common {
    /// The encrypted file
    #[arg(short = 'f', long)]
    pub file: PathBuf,
    /// Write the result back to the file instead of printing it
    #[arg(short = 'i', long)]
    pub in_place: bool,
    /// Number of key groups needed to recover the data key
    #[arg(long)]
    pub shamir_secret_sharing_threshold: Option<usize>,
    /// Key types to try first, e.g. age,pgp (env SOPS_DECRYPTION_ORDER); offline keys (age, pgp,
    /// pkcs11) still go before network keys
    #[arg(long)]
    pub decryption_order: Option<String>,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    pub common: Common,
    /// An age recipient of the new group (repeatable)
    #[arg(long)]
    pub age: Vec<String>,
    /// A PGP fingerprint of the new group (repeatable)
    #[arg(long)]
    pub pgp: Vec<String>,
    /// A PKCS#11 URI of the new group (repeatable; needs the pkcs11 feature)
    #[arg(long)]
    pub pkcs11: Vec<String>,
    /// A Vault transit key URI of the new group (repeatable)
    #[arg(long, hide = cfg!(not(feature = "vault")))]
    pub hc_vault_transit: Vec<String>,
    /// An AWS KMS ARN[+ROLE_ARN] of the new group (repeatable; needs the aws feature)
    #[arg(long, hide = cfg!(not(feature = "aws")))]
    pub kms: Vec<String>,
    /// A GCP KMS resource ID of the new group (repeatable; needs the gcp feature)
    #[arg(long, hide = cfg!(not(feature = "gcp")))]
    pub gcp_kms: Vec<String>,
    /// An Azure Key Vault key URL of the new group (repeatable; needs the azure feature)
    #[arg(long, hide = cfg!(not(feature = "azure")))]
    pub azure_kv: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub common: Common,
    /// The group to delete, counted from 0
    pub index: usize,
}

pub fn run(command: GroupsCommand, global: &GlobalArgs) -> CliResult {
    match command {
        GroupsCommand::Add(args) => {
            let mut new_group = super::keys::listed_recipients(
                Some(&args.age.join(",")),
                Some(&args.pgp.join(",")),
            )?;
            for uri in &args.pkcs11 {
                new_group.extend(super::keys::listed_pkcs11(Some(uri))?);
            }
            new_group.extend(super::keys::listed_vault_recipients(Some(
                &args.hc_vault_transit.join(","),
            ))?);
            new_group.extend(super::keys::listed_kms_recipients(Some(
                &args.kms.join(","),
            ))?);
            new_group.extend(super::keys::listed_gcp_kms_recipients(Some(
                &args.gcp_kms.join(","),
            ))?);
            new_group.extend(super::keys::listed_azure_kv_recipients(Some(
                &args.azure_kv.join(","),
            ))?);
            if new_group.is_empty() {
                return Err(Failure::new(
                    Code::Generic,
                    "groups add needs at least one --age or --pgp recipient",
                ));
            }
            change(&args.common, global, |metadata, groups| {
                groups.push(std::mem::take(&mut new_group));
                let _ = metadata;
                Ok(())
            })
        }
        GroupsCommand::Delete(args) => {
            let index = args.index;
            change(&args.common, global, |metadata, groups| {
                if index >= groups.len() {
                    return Err(Failure::new(
                        Code::Generic,
                        format!(
                            "there is no key group {index}: the file has {} (counted from 0)",
                            groups.len()
                        ),
                    ));
                }
                groups.remove(index);
                metadata.key_groups.remove(index);
                Ok(())
            })
        }
    }
}

type Groups = Vec<Vec<Box<dyn veil::keys::Recipient>>>;

fn change(
    common: &Common,
    global: &GlobalArgs,
    edit: impl FnOnce(&mut Metadata, &mut Groups) -> CliResult,
) -> CliResult {
    let input = Input::from_arg(Some(&common.file));
    input.require_existing()?;
    let output = Output::choose(&input, common.in_place, None)?;
    let format = super::input_format(&Default::default(), &input)?;
    let config = super::load_config(global)?;
    let loaded = super::load_encrypted(&input, format)?;
    let mut metadata =
        document::metadata_of(&loaded).map_err(|e| super::decrypt::open_failure(&input, e))?;
    let keyring = super::keys::keyring(common.decryption_order.as_deref())?;
    let key = keyring
        .recover(&metadata)
        .map_err(|e| super::decrypt::open_failure(&input, document::DocumentError::Recovery(e)))?;
    let mut groups = super::keys::recipients_of(&metadata.key_groups)?;
    edit(&mut metadata, &mut groups)?;
    if groups.is_empty() {
        return Err(Failure::new(
            Code::Generic,
            in_file(&input, "a file needs at least one key group"),
        ));
    }
    let threshold = common
        .shamir_secret_sharing_threshold
        .unwrap_or(metadata.shamir_threshold);
    if threshold > groups.len() {
        return Err(Failure::new(
            Code::Generic,
            in_file(
                &input,
                format!(
                    "a Shamir threshold of {threshold} cannot be met by {} key group(s)",
                    groups.len()
                ),
            ),
        )
        .with_hint("lower it with --shamir-secret-sharing-threshold"));
    }
    let (wrapped, threshold) = document::wrap_data_key(&key, &groups, threshold)
        .map_err(|e| Failure::new(Code::Generic, in_file(&input, e)))?;
    metadata.shamir_threshold = if wrapped.len() > 1 { threshold } else { 0 };
    metadata.key_groups = wrapped;
    let Loaded { tree, .. } = loaded;
    let text = super::emit_encrypted(&input, format, &tree, &metadata, config.as_ref(), global)?;
    output.write(&text)
}
