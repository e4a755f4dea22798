//! `.sops.yaml`: discovery and creation rules (spec §9), read with veil's own YAML store.
//!
//! A creation rule says, for files whose path matches `path_regex`, which recipients the data key
//! is wrapped for (flat lists or key groups), the Shamir threshold and the encryption selector.

use std::path::{Component, Path, PathBuf};

use regex::Regex;

use crate::crypt::{Rules, Selector};
use crate::store::{Format, Indent};
use crate::tree::{Map, Node, Value};

/// The name sops looks for; `.sops.yml` is never used.
pub const CONFIG_NAME: &str = ".sops.yaml";

/// How many parent directories discovery climbs, as sops.
const MAX_DEPTH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
    #[error("{file}: no creation rule matches {target}")]
    NoMatchingRule { file: PathBuf, target: String },
}

/// Recipients of one key group, by type, as written in the config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupSpec {
    pub age: Vec<String>,
    pub pgp: Vec<String>,
    /// PKCS#11 URIs (veil's own `pkcs11` field, beyond sops).
    pub pkcs11: Vec<String>,
    /// `(key, name)` for every key the rule named through the config's `recipients` section,
    /// so messages can say whose key it is.
    pub named: Vec<(String, String)>,
    /// HashiCorp Vault / OpenBao transit key URIs (`hc_vault_transit_uri`, `hc_vault`).
    pub vault: Vec<String>,
    /// Key types veil has no key source for yet (`gcp_kms`, …), with their entries.
    pub unsupported: Vec<(String, String)>,
    /// AWS KMS keys (`kms`; used with the `aws` feature).
    pub kms: Vec<KmsSpec>,
    /// GCP KMS resource IDs (`gcp_kms`; used with the `gcp` feature).
    pub gcp_kms: Vec<String>,
    /// Azure Key Vault keys (`azure_keyvault`; used with the `azure` feature).
    pub azure_kv: Vec<AzureKvSpec>,
}

/// One Azure Key Vault key of a rule: a key URL (a flat `azure_keyvault` item, or a string in a
/// key group), or a key_groups map `{vaultUrl, key, version}` (sops' form; version may be empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AzureKvSpec {
    Url(String),
    Parts {
        vault_url: String,
        key: String,
        version: String,
    },
}

/// A key_groups `azure_keyvault` list: maps `{vaultUrl, key, version}` (sops' form), or key URLs.
fn azure_kv_list(node: &Node) -> Result<Vec<AzureKvSpec>, String> {
    let Node::List(list) = node else {
        return match node {
            Node::Scalar(s) if s.value == Value::Null => Ok(Vec::new()),
            _ => Err("expected a list of {vaultUrl, key, version} maps".into()),
        };
    };
    let mut out = Vec::new();
    for (i, item) in list.nodes().enumerate() {
        match item {
            Node::Scalar(_) => match scalar_text(item).map(|t| t.trim().to_string()) {
                Some(url) if !url.is_empty() => out.push(AzureKvSpec::Url(url)),
                _ => {
                    return Err(format!(
                        "[{i}] must be a {{vaultUrl, key, version}} map or a URL"
                    ))
                }
            },
            Node::Map(map) => {
                let field = |name: &str| {
                    map.pairs()
                        .find(|p| p.key == name)
                        .and_then(|p| scalar_text(&p.value))
                        .map(|t| t.trim().to_string())
                        .unwrap_or_default()
                };
                let (vault_url, key) = (field("vaultUrl"), field("key"));
                if vault_url.is_empty() || key.is_empty() {
                    return Err(format!("[{i}] needs vaultUrl and key"));
                }
                out.push(AzureKvSpec::Parts {
                    vault_url,
                    key,
                    version: field("version"),
                });
            }
            Node::List(_) => return Err(format!("[{i}] must be a map or a URL")),
        }
    }
    Ok(out)
}

/// One AWS KMS key of a rule: a flat `kms` item (`arn[+role]`, with the rule's `aws_profile`) or
/// a key_groups `kms` map `{arn, role, context, aws_profile}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KmsSpec {
    pub arn: String,
    pub role: String,
    pub context: Vec<(String, String)>,
    pub aws_profile: String,
}

impl KmsSpec {
    /// `arn[+role]` as sops splits it: spaces removed, the role starts at the first `+arn:`.
    fn parse(text: &str) -> KmsSpec {
        let text: String = text.chars().filter(|c| *c != ' ').collect();
        match text.find("+arn:") {
            Some(at) if at > 0 => KmsSpec {
                arn: text[..at].to_string(),
                role: text[at + 1..].to_string(),
                ..KmsSpec::default()
            },
            _ => KmsSpec {
                arn: text,
                ..KmsSpec::default()
            },
        }
    }
}

/// A key_groups `gcp_kms` list: maps `{resource_id}` (sops' form), or resource ID strings.
fn gcp_kms_list(node: &Node) -> Result<Vec<String>, String> {
    let Node::List(list) = node else {
        return match node {
            Node::Scalar(s) if s.value == Value::Null => Ok(Vec::new()),
            _ => Err("expected a list of {resource_id} maps".into()),
        };
    };
    let mut out = Vec::new();
    for (i, item) in list.nodes().enumerate() {
        let text = match item {
            Node::Scalar(_) => scalar_text(item),
            Node::Map(map) => map
                .pairs()
                .find(|p| p.key == "resource_id")
                .and_then(|p| scalar_text(&p.value)),
            Node::List(_) => None,
        };
        match text.map(|t| t.replace(' ', "")).filter(|t| !t.is_empty()) {
            Some(id) => out.push(id),
            None => return Err(format!("[{i}] must be a {{resource_id}} map or a string")),
        }
    }
    Ok(out)
}

/// A key_groups `kms` list: maps `{arn, role, context: {k: v}, aws_profile}` (sops' form), or
/// `arn[+role]` strings.
fn kms_list(node: &Node) -> Result<Vec<KmsSpec>, String> {
    let Node::List(list) = node else {
        return match node {
            Node::Scalar(s) if s.value == Value::Null => Ok(Vec::new()),
            _ => Err("expected a list of {arn, role, context, aws_profile} maps".into()),
        };
    };
    let mut out = Vec::new();
    for (i, item) in list.nodes().enumerate() {
        match item {
            Node::Scalar(_) => {
                let text = scalar_text(item).ok_or_else(|| format!("[{i}] must be a string"))?;
                out.push(KmsSpec::parse(&text));
            }
            Node::Map(map) => {
                let mut spec = KmsSpec::default();
                for pair in map.pairs() {
                    let text = || scalar_text(&pair.value).unwrap_or_default();
                    match pair.key.as_str() {
                        "arn" => spec.arn = text().replace(' ', ""),
                        "role" => spec.role = text(),
                        "aws_profile" => spec.aws_profile = text(),
                        "context" => match &pair.value {
                            Node::Map(ctx) => {
                                for p in ctx.pairs() {
                                    let value = scalar_text(&p.value).ok_or_else(|| {
                                        format!("[{i}].context.{}: values must be strings", p.key)
                                    })?;
                                    spec.context.push((p.key.clone(), value));
                                }
                            }
                            Node::Scalar(s) if s.value == Value::Null => {}
                            _ => return Err(format!("[{i}].context must be a mapping")),
                        },
                        _ => {}
                    }
                }
                if spec.arn.is_empty() {
                    return Err(format!("[{i}] has no arn"));
                }
                out.push(spec);
            }
            Node::List(_) => return Err(format!("[{i}] must be a map or a string")),
        }
    }
    Ok(out)
}

impl GroupSpec {
    pub fn is_empty(&self) -> bool {
        self.age.is_empty()
            && self.pgp.is_empty()
            && self.pkcs11.is_empty()
            && self.vault.is_empty()
            && self.unsupported.is_empty()
            && self.kms.is_empty()
            && self.gcp_kms.is_empty()
            && self.azure_kv.is_empty()
    }
}

#[derive(Clone, Debug)]
pub struct CreationRule {
    pub path_regex: Option<Regex>,
    pub key_groups: Vec<GroupSpec>,
    pub shamir_threshold: usize,
    pub selector: Option<Selector>,
    pub mac_only_encrypted: bool,
}

impl CreationRule {
    /// The rule's encryption rules; no selector means sops' default `_unencrypted` suffix.
    pub fn rules(&self) -> Rules {
        Rules {
            selector: self.selector.clone().or(Rules::default().selector),
            mac_only_encrypted: self.mac_only_encrypted,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub creation_rules: Vec<CreationRule>,
    pub yaml_indent: Option<usize>,
    pub json_indent: Option<Option<usize>>,
    pub json_binary_indent: Option<Option<usize>>,
}

/// Finds the config: `explicit` (from `--config` / `SOPS_CONFIG`) or `.sops.yaml` in `start`
/// and its parents.
pub fn discover(start: &Path, explicit: Option<&Path>) -> Result<Option<Config>, ConfigError> {
    if let Some(file) = explicit {
        return load(file).map(Some);
    }
    let mut dir = Some(start);
    for _ in 0..MAX_DEPTH {
        let Some(current) = dir else { break };
        let candidate = current.join(CONFIG_NAME);
        if candidate.is_file() {
            return load(&candidate).map(Some);
        }
        dir = current.parent();
    }
    Ok(None)
}

/// Reads one config file.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse(&bytes, file)
}

fn invalid(file: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        message: message.into(),
    }
}

/// Parses config text; `file` names it in errors and anchors `path_regex` matching.
pub fn parse(bytes: &[u8], file: &Path) -> Result<Config, ConfigError> {
    let loaded = Format::Yaml
        .load(bytes)
        .map_err(|e| invalid(file, e.to_string()))?;
    let empty = Map::new();
    let root = loaded.tree.documents.first().unwrap_or(&empty);
    let mut config = Config {
        file: file.to_path_buf(),
        creation_rules: Vec::new(),
        yaml_indent: None,
        json_indent: None,
        json_binary_indent: None,
    };
    let names = match root.get("recipients") {
        None => Vec::new(),
        Some(node) => recipient_names(node).map_err(|m| invalid(file, m))?,
    };
    if let Some(node) = root.get("creation_rules") {
        let Node::List(rules) = node else {
            return Err(invalid(file, "creation_rules must be a list"));
        };
        for (index, rule) in rules.nodes().enumerate() {
            let map = rule.as_map().ok_or_else(|| {
                invalid(file, format!("creation_rules[{index}] must be a mapping"))
            })?;
            let mut rule = parse_rule(map)
                .map_err(|m| invalid(file, format!("creation_rules[{index}]: {m}")))?;
            for group in &mut rule.key_groups {
                resolve_names(group, &names);
            }
            config.creation_rules.push(rule);
        }
    }
    if let Some(Node::Map(stores)) = root.get("stores") {
        let indent_of = |name: &str| -> Result<Option<i64>, ConfigError> {
            match stores
                .get(name)
                .and_then(|n| n.as_map())
                .and_then(|m| m.get("indent"))
            {
                None => Ok(None),
                Some(Node::Scalar(s)) => match s.value {
                    Value::Int(i) => Ok(Some(i)),
                    _ => Err(invalid(
                        file,
                        format!("stores.{name}.indent must be an integer"),
                    )),
                },
                Some(_) => Err(invalid(
                    file,
                    format!("stores.{name}.indent must be an integer"),
                )),
            }
        };
        if let Some(i) = indent_of("yaml")? {
            config.yaml_indent = Some(
                usize::try_from(i)
                    .map_err(|_| invalid(file, "stores.yaml.indent must not be negative"))?,
            );
        }
        let json = |i: i64, name: &str| match i {
            -1 => Ok(None),
            i if i >= 0 => Ok(Some(i as usize)),
            _ => Err(invalid(
                file,
                format!("stores.{name}.indent must be -1 (tab) or more"),
            )),
        };
        if let Some(i) = indent_of("json")? {
            config.json_indent = Some(json(i, "json")?);
        }
        if let Some(i) = indent_of("json_binary")? {
            config.json_binary_indent = Some(json(i, "json_binary")?);
        }
    }
    Ok(config)
}

/// The `recipients` section (beyond sops, its #366): `name: key`, so rules can say `age: [alice]`
/// and a key is written once however many rules use it.
fn recipient_names(node: &Node) -> Result<Vec<(String, String)>, String> {
    let Node::Map(map) = node else {
        return Err("recipients must be a mapping of names to keys".into());
    };
    map.pairs()
        .map(|pair| {
            scalar_text(&pair.value)
                .filter(|key| !key.trim().is_empty())
                .map(|key| (pair.key.clone(), key.trim().to_string()))
                .ok_or_else(|| format!("recipients.{}: the key must be a string", pair.key))
        })
        .collect()
}

/// Replaces names from the `recipients` section by their keys, remembering which name each was.
fn resolve_names(group: &mut GroupSpec, names: &[(String, String)]) {
    for list in [
        &mut group.age,
        &mut group.pgp,
        &mut group.pkcs11,
        &mut group.vault,
    ] {
        for entry in list.iter_mut() {
            if let Some((name, key)) = names.iter().find(|(name, _)| name == entry) {
                group.named.push((key.clone(), name.clone()));
                *entry = key.clone();
            }
        }
    }
}

/// A string that may be comma-separated, or a list of strings (sops accepts both).
fn string_list(node: &Node) -> Result<Vec<String>, String> {
    let split = |s: &str| {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    match node {
        Node::Scalar(s) => match &s.value {
            Value::Null => Ok(Vec::new()),
            Value::Str(text) => Ok(split(text)),
            _ => Err("expected a string or a list of strings".into()),
        },
        Node::List(list) => {
            let mut out = Vec::new();
            for item in list.nodes() {
                match item {
                    Node::Scalar(s) if s.value.as_str().is_some() => {
                        out.extend(split(s.value.as_str().unwrap_or_default()))
                    }
                    _ => return Err("expected a list of strings".into()),
                }
            }
            Ok(out)
        }
        Node::Map(_) => Err("expected a string or a list of strings".into()),
    }
}

/// PKCS#11 URIs: a list of strings, or one string of `URI[,URI…]` (commas inside a URI stay).
fn pkcs11_list(node: &Node) -> Result<Vec<String>, String> {
    match node {
        Node::Scalar(s) => match &s.value {
            Value::Null => Ok(Vec::new()),
            Value::Str(text) => Ok(crate::keys::pkcs11::split_uris(text)),
            _ => Err("expected a string or a list of strings".into()),
        },
        Node::List(list) => list
            .nodes()
            .map(|item| match item {
                Node::Scalar(s) => s
                    .value
                    .as_str()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| "expected a list of URI strings".to_string()),
                _ => Err("expected a list of URI strings".into()),
            })
            .collect(),
        Node::Map(_) => Err("expected a string or a list of strings".into()),
    }
}

fn scalar_text(node: &Node) -> Option<String> {
    match node {
        Node::Scalar(s) => match &s.value {
            Value::Str(t) => Some(t.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        },
        _ => None,
    }
}

const UNSUPPORTED_FLAT: [(&str, &str); 4] = [
    ("kms", "kms"),
    ("gcp_kms", "gcp_kms"),
    ("hc_vault_transit_uri", "hc_vault"),
    ("hckms", "hckms"),
];

fn parse_group(map: &Map) -> Result<GroupSpec, String> {
    // sops puts the keys of merged groups first, whatever the order of the fields.
    let mut merged = GroupSpec::default();
    let mut group = GroupSpec::default();
    for pair in map.pairs() {
        match pair.key.as_str() {
            "age" => group
                .age
                .extend(string_list(&pair.value).map_err(|e| format!("age: {e}"))?),
            "pgp" => group
                .pgp
                .extend(string_list(&pair.value).map_err(|e| format!("pgp: {e}"))?),
            "pkcs11" => group
                .pkcs11
                .extend(pkcs11_list(&pair.value).map_err(|e| format!("pkcs11: {e}"))?),
            "merge" => {
                let Node::List(groups) = &pair.value else {
                    return Err("merge must be a list of groups".into());
                };
                for nested in groups.nodes() {
                    let nested =
                        parse_group(nested.as_map().ok_or("merge must be a list of groups")?)?;
                    merged.age.extend(nested.age);
                    merged.pgp.extend(nested.pgp);
                    merged.pkcs11.extend(nested.pkcs11);
                    merged.vault.extend(nested.vault);
                    merged.unsupported.extend(nested.unsupported);
                    merged.kms.extend(nested.kms);
                    merged.gcp_kms.extend(nested.gcp_kms);
                    merged.azure_kv.extend(nested.azure_kv);
                }
            }
            "hc_vault" => group
                .vault
                .extend(string_list(&pair.value).map_err(|e| format!("hc_vault: {e}"))?),
            "kms" => group
                .kms
                .extend(kms_list(&pair.value).map_err(|e| format!("kms: {e}"))?),
            "gcp_kms" => group
                .gcp_kms
                .extend(gcp_kms_list(&pair.value).map_err(|e| format!("gcp_kms: {e}"))?),
            "azure_keyvault" => group
                .azure_kv
                .extend(azure_kv_list(&pair.value).map_err(|e| format!("azure_keyvault: {e}"))?),
            "hckms" => {
                if let Node::List(list) = &pair.value {
                    for item in list.nodes() {
                        group
                            .unsupported
                            .push(("hckms".to_string(), describe(item)));
                    }
                }
            }
            _ => {}
        }
    }
    merged.age.append(&mut group.age);
    merged.pgp.append(&mut group.pgp);
    merged.pkcs11.append(&mut group.pkcs11);
    merged.vault.append(&mut group.vault);
    merged.unsupported.append(&mut group.unsupported);
    merged.kms.append(&mut group.kms);
    merged.gcp_kms.append(&mut group.gcp_kms);
    merged.azure_kv.append(&mut group.azure_kv);
    let mut group = merged;
    dedup(&mut group.age);
    dedup(&mut group.pgp);
    dedup(&mut group.pkcs11);
    dedup(&mut group.vault);
    dedup(&mut group.gcp_kms);
    dedup_by_value(&mut group.azure_kv);
    let mut seen = Vec::new();
    group.kms.retain(|k| {
        let new = !seen.contains(k);
        seen.push(k.clone());
        new
    });
    Ok(group)
}

fn describe(node: &Node) -> String {
    match node {
        Node::Map(m) => m
            .pairs()
            .next()
            .and_then(|p| scalar_text(&p.value))
            .unwrap_or_default(),
        other => scalar_text(other).unwrap_or_default(),
    }
}

fn dedup(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|i| seen.insert(i.clone()));
}

fn dedup_by_value<T: Clone + PartialEq>(items: &mut Vec<T>) {
    let mut seen: Vec<T> = Vec::new();
    items.retain(|i| {
        let new = !seen.contains(i);
        seen.push(i.clone());
        new
    });
}

fn parse_rule(map: &Map) -> Result<CreationRule, String> {
    let mut path_regex = None;
    let mut flat = GroupSpec::default();
    let mut key_groups = Vec::new();
    let mut shamir_threshold = 0;
    let mut selectors = Vec::new();
    let mut mac_only_encrypted = false;
    let mut flat_aws_profile = String::new();
    for pair in map.pairs() {
        let key = pair.key.as_str();
        match key {
            "path_regex" => {
                let text = scalar_text(&pair.value).ok_or("path_regex must be a string")?;
                if !text.is_empty() {
                    path_regex =
                        Some(Regex::new(&text).map_err(|e| {
                            format!("path_regex {text:?} is not a valid regex: {e}")
                        })?);
                }
            }
            "age" => flat.age = string_list(&pair.value).map_err(|e| format!("age: {e}"))?,
            "pgp" => flat.pgp = string_list(&pair.value).map_err(|e| format!("pgp: {e}"))?,
            "pkcs11" => {
                flat.pkcs11 = pkcs11_list(&pair.value).map_err(|e| format!("pkcs11: {e}"))?
            }
            // Before the fallback arm, which would list `kms` as unsupported.
            "kms" => {
                flat.kms = string_list(&pair.value)
                    .map_err(|e| format!("kms: {e}"))?
                    .iter()
                    .map(|item| KmsSpec::parse(item))
                    .collect()
            }
            "gcp_kms" => {
                flat.gcp_kms = string_list(&pair.value)
                    .map_err(|e| format!("gcp_kms: {e}"))?
                    .iter()
                    .map(|item| item.replace(' ', ""))
                    .collect()
            }
            "azure_keyvault" => {
                flat.azure_kv = string_list(&pair.value)
                    .map_err(|e| format!("azure_keyvault: {e}"))?
                    .into_iter()
                    .map(AzureKvSpec::Url)
                    .collect()
            }
            "aws_profile" => {
                flat_aws_profile = scalar_text(&pair.value).ok_or("aws_profile must be a string")?
            }
            "hc_vault_transit_uri" => {
                flat.vault =
                    string_list(&pair.value).map_err(|e| format!("hc_vault_transit_uri: {e}"))?
            }
            "key_groups" => {
                let Node::List(groups) = &pair.value else {
                    return Err("key_groups must be a list".into());
                };
                for (i, group) in groups.nodes().enumerate() {
                    let group_map = group
                        .as_map()
                        .ok_or_else(|| format!("key_groups[{i}] must be a mapping"))?;
                    key_groups
                        .push(parse_group(group_map).map_err(|e| format!("key_groups[{i}]: {e}"))?);
                }
            }
            "shamir_threshold" => {
                shamir_threshold = scalar_text(&pair.value)
                    .and_then(|t| t.parse().ok())
                    .ok_or("shamir_threshold must be a non-negative integer")?;
            }
            "mac_only_encrypted" => {
                mac_only_encrypted =
                    matches!(&pair.value, Node::Scalar(s) if s.value == Value::Bool(true));
            }
            k if Selector::FIELDS.contains(&k) => {
                let text =
                    scalar_text(&pair.value).ok_or_else(|| format!("{k} must be a string"))?;
                if !text.is_empty() {
                    selectors.push(
                        Selector::from_field(k, &text)
                            .ok_or_else(|| format!("{k} is not a selector"))?,
                    );
                }
            }
            k => {
                if let Some((_, kind)) = UNSUPPORTED_FLAT.iter().find(|(name, _)| *name == k) {
                    for item in string_list(&pair.value).map_err(|e| format!("{k}: {e}"))? {
                        flat.unsupported.push((kind.to_string(), item));
                    }
                }
            }
        }
    }
    if selectors.len() > 1 {
        let names: Vec<_> = selectors.iter().map(|s| s.field()).collect();
        return Err(format!("only one of {} may be set", names.join(", ")));
    }
    if let Some(
        Selector::UnencryptedRegex(p)
        | Selector::EncryptedRegex(p)
        | Selector::UnencryptedCommentRegex(p)
        | Selector::EncryptedCommentRegex(p),
    ) = selectors.first()
    {
        if !p.is_valid() {
            return Err(format!("{:?} is not a valid regex", p.source));
        }
    }
    dedup(&mut flat.age);
    dedup(&mut flat.pgp);
    dedup(&mut flat.pkcs11);
    dedup(&mut flat.vault);
    dedup(&mut flat.gcp_kms);
    dedup_by_value(&mut flat.azure_kv);
    for key in &mut flat.kms {
        key.aws_profile.clone_from(&flat_aws_profile);
    }
    // A non-empty key_groups replaces the flat key fields, even when its groups are empty.
    let key_groups = if !key_groups.is_empty() {
        key_groups
    } else {
        vec![flat]
    };
    Ok(CreationRule {
        path_regex,
        key_groups,
        shamir_threshold,
        selector: selectors.pop(),
        mac_only_encrypted,
    })
}

impl Config {
    /// The first rule whose `path_regex` matches `target`, made relative to the config's directory
    /// when it lies under it (spec §9.3). `Ok(None)`: the config has no creation rules at all.
    pub fn rule_for(&self, target: &Path) -> Result<Option<&CreationRule>, ConfigError> {
        if self.creation_rules.is_empty() {
            return Ok(None);
        }
        let target_abs = absolute(target);
        let config_dir = self.file.parent().map(absolute).unwrap_or_default();
        let relative = target_abs.strip_prefix(&config_dir).unwrap_or(&target_abs);
        let text = relative.to_string_lossy();
        self.creation_rules
            .iter()
            .find(|rule| rule.path_regex.as_ref().is_none_or(|re| re.is_match(&text)))
            .map(Some)
            .ok_or_else(|| ConfigError::NoMatchingRule {
                file: self.file.clone(),
                target: text.into_owned(),
            })
    }

    /// Indentation from the `stores` section, with `--indent` overriding all of them.
    pub fn indent(&self, flag: Option<usize>) -> Indent {
        let default = Indent::default();
        match flag {
            Some(n) => Indent {
                yaml: n,
                json: Some(n),
                json_binary: Some(n),
            },
            None => Indent {
                yaml: self.yaml_indent.unwrap_or(default.yaml),
                json: self.json_indent.unwrap_or(default.json),
                json_binary: self.json_binary_indent.unwrap_or(default.json_binary),
            },
        }
    }
}

/// An absolute, lexically normalised path (no symlink resolution, like Go's `filepath.Abs`).
pub fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests;
