//! `veil updatekeys FILE…`: make each file's recipients match its creation rule in `.sops.yaml`.
//!
//! Adding recipients re-wraps the existing data key, so values, MAC and `lastmodified` stay as
//! they are. Beyond sops (its #365): when a recipient is removed, the data key is rotated as
//! well, because the removed key could still open the old data key from the file's history;
//! `--no-rotate` keeps sops' behaviour. The rule's `shamir_threshold` is applied too (sops #810).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::Args;
use veil::document::{self, EncryptPlan, OpenOptions};
use veil::keys::Recipient;
use veil::store::Loaded;

use super::io::{Input, Output};
use super::{in_file, CliResult, Code, Failure, GlobalArgs};

#[derive(Args, Debug)]
pub struct UpdateKeysArgs {
    /// Do not ask before changing a file
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Only re-wrap the data key, even when a recipient is removed (sops' behaviour)
    #[arg(long)]
    pub no_rotate: bool,
    /// Input format (default: from the file extension)
    #[arg(long)]
    pub input_type: Option<String>,
    /// Key types to try first, e.g. age,pgp (env SOPS_DECRYPTION_ORDER); offline keys (age, pgp,
    /// pkcs11) still go before network keys
    #[arg(long)]
    pub decryption_order: Option<String>,
    /// The encrypted files
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn run(args: UpdateKeysArgs, global: &GlobalArgs) -> CliResult {
    let config = super::load_config(global)?.ok_or_else(|| {
        Failure::new(
            Code::Generic,
            "updatekeys needs a .sops.yaml: none was found",
        )
        .with_hint("run it inside the repository, or pass --config")
    })?;
    for file in &args.files {
        update_one(&args, global, &config, file)?;
    }
    Ok(())
}

fn names(groups: &[Vec<Box<dyn Recipient>>]) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| g.iter().map(|r| r.name()).collect())
        .collect()
}

/// An Azure Key Vault key the rule names without a version (`https://…/keys/NAME/`) is the
/// file's entry for any version of that key: files always record a concrete version.
fn settle_latest_versions(new: &mut [Vec<String>], old: &[Vec<String>]) {
    for (index, group) in new.iter_mut().enumerate() {
        let Some(before) = old.get(index) else {
            continue;
        };
        for name in group.iter_mut() {
            if !(name.starts_with("https://") && name.contains("/keys/") && name.ends_with('/')) {
                continue;
            }
            if let Some(stored) = before.iter().find(|b| {
                b.strip_prefix(name.as_str())
                    .is_some_and(|v| !v.contains('/'))
            }) {
                name.clone_from(stored);
            }
        }
    }
}

fn update_one(
    args: &UpdateKeysArgs,
    global: &GlobalArgs,
    config: &veil::config::Config,
    file: &std::path::Path,
) -> CliResult {
    let input = Input::from_arg(Some(file));
    input.require_existing()?;
    let format_args = super::args::FormatArgs {
        input_type: args.input_type.clone(),
        ..Default::default()
    };
    let format = super::input_format(&format_args, &input)?;
    let rule = config
        .rule_for(file)
        .map_err(|e| Failure::new(Code::Generic, e))?
        .ok_or_else(|| {
            Failure::new(
                Code::Generic,
                in_file(&input, "no creation rule matches this file"),
            )
        })?;
    let loaded = super::load_encrypted(&input, format)?;
    let mut metadata =
        document::metadata_of(&loaded).map_err(|e| super::decrypt::open_failure(&input, e))?;
    let wanted = super::keys::rule_groups(rule)?;
    let old: Vec<Vec<String>> = metadata
        .key_groups
        .iter()
        .map(|g| g.keys.iter().map(|k| k.name()).collect())
        .collect();
    let mut new = names(&wanted);
    settle_latest_versions(&mut new, &old);
    let threshold = match rule.shamir_threshold {
        0 => metadata.shamir_threshold,
        n => n,
    }
    .min(wanted.len());
    let old_threshold = metadata.shamir_threshold;
    let effective = |t: usize, groups: usize| {
        if groups > 1 {
            if t == 0 {
                groups
            } else {
                t
            }
        } else {
            0
        }
    };
    if old == new && effective(old_threshold, old.len()) == effective(threshold, new.len()) {
        eprintln!("{}: already up to date", input.display());
        return Ok(());
    }
    eprintln!("The following changes will be made to {}:", input.display());
    for index in 0..old.len().max(new.len()) {
        let before = old.get(index).cloned().unwrap_or_default();
        let after = new.get(index).cloned().unwrap_or_default();
        eprintln!("Group {}", index + 1);
        for name in &after {
            let mark = if before.contains(name) {
                "    "
            } else {
                "+++ "
            };
            eprintln!("    {mark}{name}");
        }
        for name in before.iter().filter(|n| !after.contains(n)) {
            eprintln!("    --- {name}");
        }
    }
    if effective(old_threshold, old.len()) != effective(threshold, new.len()) {
        eprintln!(
            "Shamir threshold: {} -> {}",
            effective(old_threshold, old.len()),
            effective(threshold, new.len())
        );
    }
    if !args.yes && !confirm()? {
        eprintln!("{}: not changed", input.display());
        return Ok(());
    }
    let all_new: Vec<&String> = new.iter().flatten().collect();
    let removed = old.iter().flatten().any(|name| !all_new.contains(&name));
    let keyring = super::keys::keyring(args.decryption_order.as_deref())?;
    let (tree, metadata) = if removed && !args.no_rotate {
        let opened = document::open(loaded, &keyring, OpenOptions::default())
            .map_err(|e| super::decrypt::open_failure(&input, e))?;
        let plan = EncryptPlan {
            groups: wanted,
            shamir_threshold: threshold,
            rules: opened.metadata.rules.clone(),
        };
        let mut tree = opened.tree;
        let metadata = document::encrypt(&mut tree, &plan)
            .map_err(|e| Failure::new(Code::Generic, in_file(&input, e)))?;
        eprintln!(
            "{}: a recipient was removed, so the data key was rotated and every value encrypted again (--no-rotate keeps the old data key)",
            input.display()
        );
        (tree, metadata)
    } else {
        let key = keyring.recover(&metadata).map_err(|e| {
            super::decrypt::open_failure(&input, document::DocumentError::Recovery(e))
        })?;
        let (groups, threshold) = document::wrap_data_key(&key, &wanted, threshold)
            .map_err(|e| Failure::new(Code::Generic, in_file(&input, e)))?;
        metadata.shamir_threshold = if groups.len() > 1 { threshold } else { 0 };
        metadata.key_groups = groups;
        let Loaded { tree, .. } = loaded;
        (tree, metadata)
    };
    let text = super::emit_encrypted(&input, format, &tree, &metadata, Some(config), global)?;
    Output::InPlace(file.to_path_buf()).write(&text)?;
    eprintln!("{}: updated", input.display());
    Ok(())
}

/// Asks on stderr and reads y/n from stdin; end of input is a no.
fn confirm() -> CliResult<bool> {
    eprint!("Is this okay? (y/n): ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => Ok(false),
        Ok(_) => Ok(matches!(line.trim(), "y" | "Y" | "yes")),
    }
}
