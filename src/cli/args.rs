//! Flags shared by several commands, spelled as sops spells them.

use std::path::PathBuf;

use clap::Args;

/// Flags that name recipients for new data keys (sops' key flags).
#[derive(Args, Clone, Debug, Default)]
pub struct RecipientArgs {
    /// Comma-separated age recipients (env SOPS_AGE_RECIPIENTS)
    #[arg(short = 'a', long)]
    pub age: Option<String>,
    /// Comma-separated PGP fingerprints (env SOPS_PGP_FP)
    #[arg(short = 'p', long)]
    pub pgp: Option<String>,
    /// Comma-separated AWS KMS ARNs, each optionally +ROLE_ARN (env SOPS_KMS_ARN)
    #[arg(short = 'k', long)]
    pub kms: Option<String>,
    /// AWS profile for the KMS keys
    #[arg(long)]
    pub aws_profile: Option<String>,
    /// Comma-separated GCP KMS resource IDs (env SOPS_GCP_KMS_IDS)
    #[arg(long)]
    pub gcp_kms: Option<String>,
    /// Comma-separated HuaweiCloud KMS key IDs (env SOPS_HUAWEICLOUD_KMS_IDS)
    #[arg(long)]
    pub hckms: Option<String>,
    /// Comma-separated Azure Key Vault key URLs (env SOPS_AZURE_KEYVAULT_URLS)
    #[arg(long)]
    pub azure_kv: Option<String>,
    /// Comma-separated Vault transit key URIs (env SOPS_VAULT_URIS)
    #[arg(long)]
    pub hc_vault_transit: Option<String>,
    /// Comma-separated PKCS#11 URIs (RFC 7512) of HSM keys (env VEIL_PKCS11_URIS; needs the
    /// pkcs11 feature)
    #[arg(long)]
    pub pkcs11: Option<String>,
    /// KMS encryption context, as key:value,key:value
    #[arg(long)]
    pub encryption_context: Option<String>,
    /// Number of key groups needed to recover the data key
    #[arg(long)]
    pub shamir_secret_sharing_threshold: Option<usize>,
}

/// The four selector flags that subcommands take (the comment ones are global, as in sops).
#[derive(Args, Clone, Debug, Default)]
pub struct SelectorArgs {
    /// Leave values whose key (or an ancestor's) ends with this suffix unencrypted
    #[arg(long)]
    pub unencrypted_suffix: Option<String>,
    /// Encrypt only values whose key (or an ancestor's) ends with this suffix
    #[arg(long)]
    pub encrypted_suffix: Option<String>,
    /// Leave values whose key (or an ancestor's) matches this regex unencrypted
    #[arg(long)]
    pub unencrypted_regex: Option<String>,
    /// Encrypt only values whose key (or an ancestor's) matches this regex
    #[arg(long)]
    pub encrypted_regex: Option<String>,
}

/// Format selection.
#[derive(Args, Clone, Debug, Default)]
pub struct FormatArgs {
    /// Input format: yaml, json, dotenv, ini, toml or binary (default: from the file extension)
    #[arg(long)]
    pub input_type: Option<String>,
    /// Output format (default: the input file's format)
    #[arg(long)]
    pub output_type: Option<String>,
    /// Use this file name to pick the format and the creation rule (needed with stdin)
    #[arg(long)]
    pub filename_override: Option<PathBuf>,
}
