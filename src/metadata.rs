//! The `sops` metadata block: its typed form and its tree form (spec §5).
//!
//! Stores hand over the block as a plain [`Map`] (dotenv and INI unflatten it first) and take it
//! back the same way; this module is the one place that knows the field names, the reading rules
//! (case-insensitive names, weak typing, `null` as absent) and sops 3.13's sorted writing order.

use crate::crypt::{Rules, Selector};
use crate::keys::KeyEntry;
use crate::tree::{format_time, List, ListItem, Map, MapItem, Node, Pair, Scalar, Value};

/// The sops format version veil writes. sops refuses non-semver versions and treats files older
/// than 3.3.0 specially, so veil claims the sops release whose format it implements.
pub const FORMAT_VERSION: &str = "3.13.2";

/// The metadata of an encrypted file.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    pub lastmodified: String,
    pub mac: String,
    pub version: String,
    pub rules: Rules,
    pub shamir_threshold: usize,
    pub key_groups: Vec<KeyGroup>,
}

/// Keys that each hold the whole data key (one group) or one Shamir share (several groups).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyGroup {
    pub keys: Vec<KeyEntry>,
    /// Lists of key types veil does not know (e.g. `hckms`), kept as they were so that rewriting
    /// a file does not drop another tool's keys.
    pub foreign: Vec<(String, Node)>,
}

/// A metadata block that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error("the sops metadata is not a mapping")]
    NotAMap,
    #[error("sops metadata field {field}: {reason}")]
    Field { field: String, reason: String },
    #[error(
        "the sops metadata sets more than one of {0}: a file may use only one encryption selector"
    )]
    ConflictingSelectors(String),
    #[error("no keys found in the sops metadata")]
    NoKeys,
}

fn field_error(field: &str, reason: impl Into<String>) -> MetadataError {
    MetadataError::Field {
        field: field.to_string(),
        reason: reason.into(),
    }
}

const KEY_LISTS: [&str; 7] = [
    "age", "pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "pkcs11",
];

impl Metadata {
    /// Reads a `sops` block.
    pub fn from_node(node: &Node) -> Result<Metadata, MetadataError> {
        let map = node.as_map().ok_or(MetadataError::NotAMap)?;
        let mut lastmodified = String::new();
        let mut mac = String::new();
        let mut version = String::new();
        let mut selectors = Vec::new();
        let mut mac_only_encrypted = false;
        let mut shamir_threshold = 0;
        let mut top_group = KeyGroup::default();
        let mut key_groups = Vec::new();
        for pair in map.pairs() {
            let field = pair.key.to_ascii_lowercase();
            let value = &pair.value;
            if is_null(value) {
                continue;
            }
            match field.as_str() {
                "lastmodified" => lastmodified = weak_string(&field, value)?,
                "mac" => mac = weak_string(&field, value)?,
                "version" => version = weak_string(&field, value)?,
                "mac_only_encrypted" => mac_only_encrypted = weak_bool(&field, value)?,
                "shamir_threshold" => shamir_threshold = weak_usize(&field, value)?,
                "key_groups" => {
                    let Node::List(groups) = value else {
                        return Err(field_error(&field, "must be a list"));
                    };
                    for group in groups.nodes() {
                        let group_map = group
                            .as_map()
                            .ok_or_else(|| field_error(&field, "each group must be a mapping"))?;
                        key_groups.push(read_group(group_map)?);
                    }
                }
                f if Selector::FIELDS.contains(&f) => {
                    let text = weak_string(f, value)?;
                    if !text.is_empty() {
                        selectors.push(Selector::from_field(f, &text).expect("listed field"));
                    }
                }
                f if KEY_LISTS.contains(&f) => read_key_list(f, value, &mut top_group)?,
                _ if matches!(value, Node::List(_)) => {
                    top_group.foreign.push((pair.key.clone(), value.clone()))
                }
                _ => {} // unknown fields such as the legacy `attention` are ignored, as in sops
            }
        }
        if selectors.len() > 1 {
            let names: Vec<_> = selectors.iter().map(|s| s.field()).collect();
            return Err(MetadataError::ConflictingSelectors(names.join(", ")));
        }
        let has_top_keys =
            !top_group.keys.is_empty() || top_group.foreign.iter().any(|(_, n)| !is_empty_list(n));
        let key_groups = if has_top_keys {
            vec![top_group]
        } else {
            key_groups
        };
        if key_groups.is_empty() {
            return Err(MetadataError::NoKeys);
        }
        let selector = selectors.pop().or_else(|| Rules::default().selector);
        Ok(Metadata {
            lastmodified,
            mac,
            version,
            rules: Rules {
                selector,
                mac_only_encrypted,
            },
            shamir_threshold,
            key_groups,
        })
    }

    /// The block as sops 3.13 writes it: every mapping sorted by key.
    pub fn to_map(&self) -> Map {
        let mut fields: Vec<(String, Node)> = Vec::new();
        let mut put = |k: &str, v: Node| fields.push((k.to_string(), v));
        put("lastmodified", string(&self.lastmodified));
        put("mac", string(&self.mac));
        put("version", string(&self.version));
        if let Some(selector) = &self.rules.selector {
            put(selector.field(), string(selector.value()));
        }
        if self.rules.mac_only_encrypted {
            put("mac_only_encrypted", Node::scalar(Value::Bool(true)));
        }
        if self.shamir_threshold > 0 {
            put(
                "shamir_threshold",
                Node::scalar(Value::Int(self.shamir_threshold as i64)),
            );
        }
        match self.key_groups.as_slice() {
            [group] => fields.extend(write_group(group, false)),
            groups => {
                let items = groups
                    .iter()
                    .map(|g| ListItem::Node(Node::Map(sorted_map(write_group(g, true)))))
                    .collect();
                fields.push(("key_groups".into(), Node::List(List(items))));
            }
        }
        sorted_map(fields)
    }

    /// Every key entry of every group.
    pub fn keys(&self) -> impl Iterator<Item = &KeyEntry> {
        self.key_groups.iter().flat_map(|g| g.keys.iter())
    }
}

fn sorted_map(mut fields: Vec<(String, Node)>) -> Map {
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Map(fields
        .into_iter()
        .map(|(key, value)| MapItem::Pair(Pair { key, value }))
        .collect())
}

fn string(text: &str) -> Node {
    Node::scalar(Value::Str(text.to_string()))
}

fn is_null(node: &Node) -> bool {
    matches!(
        node,
        Node::Scalar(Scalar {
            value: Value::Null,
            ..
        })
    )
}

fn is_empty_list(node: &Node) -> bool {
    matches!(node, Node::List(l) if l.nodes().next().is_none())
}

/// mapstructure's weak typing: numbers and bools become their text.
fn weak_string(field: &str, node: &Node) -> Result<String, MetadataError> {
    match node {
        Node::Scalar(s) => Ok(match &s.value {
            Value::Null => String::new(),
            Value::Str(t) => t.clone(),
            Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => crate::tree::format_float(*f),
            Value::Time(t) => format_time(t),
            Value::Bytes(_) => return Err(field_error(field, "must be text")),
        }),
        _ => Err(field_error(field, "must be a single value")),
    }
}

fn weak_bool(field: &str, node: &Node) -> Result<bool, MetadataError> {
    match node {
        Node::Scalar(Scalar {
            value: Value::Bool(b),
            ..
        }) => Ok(*b),
        Node::Scalar(Scalar {
            value: Value::Int(i),
            ..
        }) => Ok(*i != 0),
        _ => match weak_string(field, node)?.as_str() {
            "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            _ => Err(field_error(field, "must be a boolean")),
        },
    }
}

fn weak_usize(field: &str, node: &Node) -> Result<usize, MetadataError> {
    match node {
        Node::Scalar(Scalar {
            value: Value::Int(i),
            ..
        }) if *i >= 0 => Ok(*i as usize),
        _ => {
            let text = weak_string(field, node)?;
            if text.is_empty() {
                return Ok(0);
            }
            text.parse()
                .map_err(|_| field_error(field, "must be a non-negative integer"))
        }
    }
}

fn read_group(map: &Map) -> Result<KeyGroup, MetadataError> {
    let mut group = KeyGroup::default();
    for pair in map.pairs() {
        let field = pair.key.to_ascii_lowercase();
        if is_null(&pair.value) {
            continue;
        }
        if KEY_LISTS.contains(&field.as_str()) {
            read_key_list(&field, &pair.value, &mut group)?;
        } else if matches!(pair.value, Node::List(_)) {
            group.foreign.push((pair.key.clone(), pair.value.clone()));
        }
    }
    Ok(group)
}

fn read_key_list(list_name: &str, node: &Node, group: &mut KeyGroup) -> Result<(), MetadataError> {
    let Node::List(list) = node else {
        return Err(field_error(list_name, "must be a list"));
    };
    for entry in list.nodes() {
        let map = entry
            .as_map()
            .ok_or_else(|| field_error(list_name, "each key must be a mapping"))?;
        group.keys.push(read_entry(list_name, map)?);
    }
    Ok(())
}

fn read_entry(list_name: &str, map: &Map) -> Result<KeyEntry, MetadataError> {
    let get = |name: &str| -> Result<String, MetadataError> {
        match map.pairs().find(|p| p.key.eq_ignore_ascii_case(name)) {
            Some(p) => weak_string(&format!("{list_name}.{name}"), &p.value),
            None => Ok(String::new()),
        }
    };
    let created_at = || -> Result<String, MetadataError> {
        let text = get("created_at")?;
        if crate::tree::parse_time(&text).is_none() {
            return Err(field_error(
                &format!("{list_name}.created_at"),
                "must be an RFC 3339 time",
            ));
        }
        Ok(text)
    };
    Ok(match list_name {
        "age" => KeyEntry::Age {
            recipient: get("recipient")?,
            enc: get("enc")?,
        },
        "pgp" => KeyEntry::Pgp {
            fp: get("fp")?,
            created_at: created_at()?,
            enc: get("enc")?,
        },
        "kms" => {
            let mut context = Vec::new();
            if let Some(Node::Map(ctx)) = map
                .pairs()
                .find(|p| p.key.eq_ignore_ascii_case("context"))
                .map(|p| &p.value)
            {
                for p in ctx.pairs() {
                    context.push((p.key.clone(), weak_string("kms.context", &p.value)?));
                }
            }
            KeyEntry::Kms {
                arn: get("arn")?,
                role: get("role")?,
                context,
                created_at: created_at()?,
                enc: get("enc")?,
                aws_profile: get("aws_profile")?,
            }
        }
        "gcp_kms" => KeyEntry::GcpKms {
            resource_id: get("resource_id")?,
            created_at: created_at()?,
            enc: get("enc")?,
        },
        "azure_kv" => KeyEntry::AzureKv {
            vault_url: get("vault_url")?,
            name: get("name")?,
            version: get("version")?,
            created_at: created_at()?,
            enc: get("enc")?,
        },
        "hc_vault" => KeyEntry::Vault {
            vault_address: get("vault_address")?,
            engine_path: get("engine_path")?,
            key_name: get("key_name")?,
            created_at: created_at()?,
            enc: get("enc")?,
        },
        "pkcs11" => KeyEntry::Pkcs11 {
            uri: get("uri")?,
            created_at: created_at()?,
            enc: get("enc")?,
        },
        _ => unreachable!("only KEY_LISTS reach here"),
    })
}

fn entry_fields(entry: &KeyEntry) -> Vec<(String, Node)> {
    let mut f: Vec<(String, Node)> = Vec::new();
    let mut put = |k: &str, v: &str| f.push((k.to_string(), string(v)));
    match entry {
        KeyEntry::Age { recipient, enc } => {
            put("enc", enc);
            put("recipient", recipient);
        }
        KeyEntry::Pgp {
            fp,
            created_at,
            enc,
        } => {
            put("created_at", created_at);
            put("enc", enc);
            put("fp", fp);
        }
        KeyEntry::Kms {
            arn,
            role,
            context,
            created_at,
            enc,
            aws_profile,
        } => {
            put("arn", arn);
            put("aws_profile", aws_profile);
            put("created_at", created_at);
            put("enc", enc);
            if !role.is_empty() {
                put("role", role);
            }
            if !context.is_empty() {
                let mut ctx: Vec<(String, Node)> = context
                    .iter()
                    .map(|(k, v)| (k.clone(), string(v)))
                    .collect();
                ctx.sort_by(|a, b| a.0.cmp(&b.0));
                f.push(("context".into(), Node::Map(sorted_map(ctx))));
            }
        }
        KeyEntry::GcpKms {
            resource_id,
            created_at,
            enc,
        } => {
            put("created_at", created_at);
            put("enc", enc);
            put("resource_id", resource_id);
        }
        KeyEntry::AzureKv {
            vault_url,
            name,
            version,
            created_at,
            enc,
        } => {
            put("created_at", created_at);
            put("enc", enc);
            put("name", name);
            put("vault_url", vault_url);
            put("version", version);
        }
        KeyEntry::Vault {
            vault_address,
            engine_path,
            key_name,
            created_at,
            enc,
        } => {
            put("created_at", created_at);
            put("enc", enc);
            put("engine_path", engine_path);
            put("key_name", key_name);
            put("vault_address", vault_address);
        }
        KeyEntry::Pkcs11 {
            uri,
            created_at,
            enc,
        } => {
            put("created_at", created_at);
            put("enc", enc);
            put("uri", uri);
        }
    }
    f
}

/// The group's key lists; inside `key_groups` sops writes `age` and `hc_vault` even when empty.
fn write_group(group: &KeyGroup, in_key_groups: bool) -> Vec<(String, Node)> {
    let mut fields = Vec::new();
    for list_name in KEY_LISTS {
        let entries: Vec<ListItem> = group
            .keys
            .iter()
            .filter(|k| k.kind() == list_name)
            .map(|k| ListItem::Node(Node::Map(sorted_map(entry_fields(k)))))
            .collect();
        let always = in_key_groups && matches!(list_name, "age" | "hc_vault");
        if !entries.is_empty() || always {
            fields.push((list_name.to_string(), Node::List(List(entries))));
        }
    }
    fields.extend(group.foreign.iter().cloned());
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        Metadata {
            lastmodified: "2024-01-01T00:00:00Z".into(),
            mac: "ENC[…]".into(),
            version: FORMAT_VERSION.into(),
            rules: Rules::default(),
            shamir_threshold: 0,
            key_groups: vec![KeyGroup {
                keys: vec![
                    KeyEntry::Age {
                        recipient: "age1x".into(),
                        enc: "E".into(),
                    },
                    KeyEntry::Pgp {
                        fp: "FP".into(),
                        created_at: "2024-01-01T00:00:00Z".into(),
                        enc: "P".into(),
                    },
                ],
                foreign: vec![],
            }],
        }
    }

    fn keys_of(map: &Map) -> Vec<&str> {
        map.pairs().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn writes_sorted_fields() {
        let map = sample().to_map();
        assert_eq!(
            keys_of(&map),
            [
                "age",
                "lastmodified",
                "mac",
                "pgp",
                "unencrypted_suffix",
                "version"
            ]
        );
    }

    #[test]
    fn round_trips() {
        let meta = sample();
        assert_eq!(
            Metadata::from_node(&Node::Map(meta.to_map())).unwrap(),
            meta
        );
    }

    #[test]
    fn several_groups_go_under_key_groups_with_empty_age_and_vault_lists() {
        let mut meta = sample();
        meta.shamir_threshold = 2;
        meta.key_groups.push(KeyGroup {
            keys: vec![KeyEntry::Age {
                recipient: "age1y".into(),
                enc: "F".into(),
            }],
            foreign: vec![],
        });
        meta.key_groups[0].keys.remove(0);
        let map = meta.to_map();
        assert_eq!(
            keys_of(&map),
            [
                "key_groups",
                "lastmodified",
                "mac",
                "shamir_threshold",
                "unencrypted_suffix",
                "version"
            ]
        );
        let Some(Node::List(groups)) = map.get("key_groups") else {
            panic!()
        };
        let first = groups.nodes().next().unwrap().as_map().unwrap();
        assert_eq!(keys_of(first), ["age", "hc_vault", "pgp"]);
        assert_eq!(Metadata::from_node(&Node::Map(map)).unwrap(), meta);
    }

    #[test]
    fn reads_case_insensitively_and_weakly_typed() {
        let mut map = sample().to_map();
        map.0
            .retain(|i| !matches!(i, MapItem::Pair(p) if p.key == "lastmodified"));
        map.insert("LastModified", string("2024-01-01T00:00:00Z"));
        map.insert("shamir_threshold", string("2"));
        map.insert("attention", string("legacy"));
        let meta = Metadata::from_node(&Node::Map(map)).unwrap();
        assert_eq!(meta.lastmodified, "2024-01-01T00:00:00Z");
        assert_eq!(meta.shamir_threshold, 2);
    }

    #[test]
    fn rejects_two_selectors_and_missing_keys() {
        let mut map = sample().to_map();
        map.insert("encrypted_regex", string("^data$"));
        assert!(matches!(
            Metadata::from_node(&Node::Map(map)),
            Err(MetadataError::ConflictingSelectors(_))
        ));
        let mut bare = Map::new();
        bare.insert("mac", string(""));
        assert_eq!(
            Metadata::from_node(&Node::Map(bare)),
            Err(MetadataError::NoKeys)
        );
    }

    #[test]
    fn pkcs11_entries_round_trip_at_top_level_and_in_key_groups() {
        let pkcs11 = KeyEntry::Pkcs11 {
            uri: "pkcs11:token=t;object=k".into(),
            created_at: "2024-01-01T00:00:00Z".into(),
            enc: "AQE=".into(),
        };
        let mut meta = sample();
        meta.key_groups[0].keys.push(pkcs11.clone());
        let map = meta.to_map();
        let Some(Node::List(list)) = map.get("pkcs11") else {
            panic!("no pkcs11 list")
        };
        let entry = list.nodes().next().unwrap().as_map().unwrap();
        assert_eq!(keys_of(entry), ["created_at", "enc", "uri"]);
        assert_eq!(Metadata::from_node(&Node::Map(map)).unwrap(), meta);

        meta.shamir_threshold = 2;
        meta.key_groups.push(KeyGroup {
            keys: vec![pkcs11],
            foreign: vec![],
        });
        let map = meta.to_map();
        let Some(Node::List(groups)) = map.get("key_groups") else {
            panic!()
        };
        let second = groups.nodes().nth(1).unwrap().as_map().unwrap();
        assert_eq!(keys_of(second), ["age", "hc_vault", "pkcs11"]);
        assert_eq!(Metadata::from_node(&Node::Map(map)).unwrap(), meta);
    }

    #[test]
    fn keeps_unknown_key_types() {
        let mut map = sample().to_map();
        let hckms = Node::List(List(vec![ListItem::Node(Node::Map(sorted_map(vec![(
            "key_id".into(),
            string("r:1"),
        )])))]));
        map.insert("hckms", hckms.clone());
        let meta = Metadata::from_node(&Node::Map(map)).unwrap();
        assert_eq!(
            meta.key_groups[0].foreign,
            vec![("hckms".to_string(), hckms)]
        );
        assert!(meta.to_map().get("hckms").is_some());
    }
}
