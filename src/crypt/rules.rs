//! Which leaves are encrypted: sops' six mutually exclusive selectors and `mac_only_encrypted`
//! (spec §3). A selector on a key applies to everything below it.

use regex::Regex;

/// The suffix sops applies when no selector is set.
pub const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// A regular expression as written in the metadata. sops silently never matches an invalid
/// regex, so the source is kept and a failed compile becomes "matches nothing".
#[derive(Clone, Debug)]
pub struct Pattern {
    pub source: String,
    regex: Option<Regex>,
}

impl Pattern {
    pub fn new(source: impl Into<String>) -> Self {
        let source = source.into();
        let regex = Regex::new(&source).ok();
        Pattern { source, regex }
    }

    pub fn is_valid(&self) -> bool {
        self.regex.is_some()
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.as_ref().is_some_and(|r| r.is_match(text))
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// The one encryption selector a file may carry.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(Pattern),
    EncryptedRegex(Pattern),
    UnencryptedCommentRegex(Pattern),
    EncryptedCommentRegex(Pattern),
}

impl Selector {
    /// The metadata field names, in the order sops checks them.
    pub const FIELDS: [&'static str; 6] = [
        "unencrypted_suffix",
        "encrypted_suffix",
        "unencrypted_regex",
        "encrypted_regex",
        "unencrypted_comment_regex",
        "encrypted_comment_regex",
    ];

    /// Builds a selector from its metadata field name and value.
    pub fn from_field(field: &str, value: &str) -> Option<Self> {
        Some(match field {
            "unencrypted_suffix" => Selector::UnencryptedSuffix(value.into()),
            "encrypted_suffix" => Selector::EncryptedSuffix(value.into()),
            "unencrypted_regex" => Selector::UnencryptedRegex(Pattern::new(value)),
            "encrypted_regex" => Selector::EncryptedRegex(Pattern::new(value)),
            "unencrypted_comment_regex" => Selector::UnencryptedCommentRegex(Pattern::new(value)),
            "encrypted_comment_regex" => Selector::EncryptedCommentRegex(Pattern::new(value)),
            _ => return None,
        })
    }

    pub fn field(&self) -> &'static str {
        match self {
            Selector::UnencryptedSuffix(_) => "unencrypted_suffix",
            Selector::EncryptedSuffix(_) => "encrypted_suffix",
            Selector::UnencryptedRegex(_) => "unencrypted_regex",
            Selector::EncryptedRegex(_) => "encrypted_regex",
            Selector::UnencryptedCommentRegex(_) => "unencrypted_comment_regex",
            Selector::EncryptedCommentRegex(_) => "encrypted_comment_regex",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Selector::UnencryptedSuffix(s) | Selector::EncryptedSuffix(s) => s,
            Selector::UnencryptedRegex(p)
            | Selector::EncryptedRegex(p)
            | Selector::UnencryptedCommentRegex(p)
            | Selector::EncryptedCommentRegex(p) => &p.source,
        }
    }
}

/// The encryption decision for one file.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// `None` encrypts every leaf: the binary store, where sops forces all selectors off.
    pub selector: Option<Selector>,
    pub mac_only_encrypted: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            selector: Some(Selector::UnencryptedSuffix(
                DEFAULT_UNENCRYPTED_SUFFIX.into(),
            )),
            mac_only_encrypted: false,
        }
    }
}

impl Rules {
    /// sops' `shouldBeEncrypted`. `path` holds the mapping keys down to the value (list indexes
    /// are not part of it); `comments` holds, per enclosing level, the comments seen since the
    /// last non-comment item. For a comment, the comment itself is the last entry of the innermost
    /// level.
    pub fn should_encrypt(
        &self,
        path: &[String],
        comments: &[Vec<String>],
        is_comment: bool,
    ) -> bool {
        let any_key = |test: &dyn Fn(&str) -> bool| path.iter().any(|k| test(k));
        match &self.selector {
            None => true,
            Some(Selector::UnencryptedSuffix(s)) => !any_key(&|k| k.ends_with(s.as_str())),
            Some(Selector::EncryptedSuffix(s)) => any_key(&|k| k.ends_with(s.as_str())),
            Some(Selector::UnencryptedRegex(p)) => !any_key(&|k| p.is_match(k)),
            Some(Selector::EncryptedRegex(p)) => any_key(&|k| p.is_match(k)),
            Some(Selector::UnencryptedCommentRegex(p)) => {
                !comments.iter().flatten().any(|c| p.is_match(c))
            }
            Some(Selector::EncryptedCommentRegex(p)) => {
                let innermost = comments.len().saturating_sub(1);
                comments.iter().enumerate().any(|(level, texts)| {
                    let skip_last = is_comment && level == innermost;
                    let considered = if skip_last {
                        &texts[..texts.len().saturating_sub(1)]
                    } else {
                        &texts[..]
                    };
                    considered.iter().any(|c| p.is_match(c))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn default_suffix_is_inherited() {
        let rules = Rules::default();
        assert!(rules.should_encrypt(&path(&["a", "b"]), &[], false));
        assert!(!rules.should_encrypt(&path(&["a_unencrypted", "b"]), &[], false));
    }

    #[test]
    fn encrypted_regex_selects_subtrees() {
        let rules = Rules {
            selector: Some(Selector::EncryptedRegex(Pattern::new(
                "^(data|stringData)$",
            ))),
            mac_only_encrypted: false,
        };
        assert!(rules.should_encrypt(&path(&["data", "x"]), &[], false));
        assert!(!rules.should_encrypt(&path(&["metadata", "name"]), &[], false));
        assert!(
            !rules.should_encrypt(&[], &[vec![" top".into()]], true),
            "top-level comments stay clear"
        );
    }

    #[test]
    fn invalid_regex_never_matches() {
        let rules = Rules {
            selector: Some(Selector::UnencryptedRegex(Pattern::new("("))),
            mac_only_encrypted: false,
        };
        assert!(rules.should_encrypt(&path(&["("]), &[], false));
    }

    #[test]
    fn encrypted_comment_regex_skips_the_comment_itself() {
        let rules = Rules {
            selector: Some(Selector::EncryptedCommentRegex(Pattern::new("sops:enc"))),
            mac_only_encrypted: false,
        };
        assert!(!rules.should_encrypt(&[], &[vec![" sops:enc".into()]], true));
        assert!(rules.should_encrypt(&[], &[vec![" sops:enc".into(), " trigger".into()]], true));
        assert!(rules.should_encrypt(&path(&["key"]), &[vec![" sops:enc".into()]], false));
    }

    #[test]
    fn unencrypted_comment_regex_covers_the_comment_itself() {
        let rules = Rules {
            selector: Some(Selector::UnencryptedCommentRegex(Pattern::new("public"))),
            mac_only_encrypted: false,
        };
        assert!(!rules.should_encrypt(&[], &[vec![" public".into()]], true));
        assert!(!rules.should_encrypt(&path(&["k"]), &[vec![" public".into()]], false));
        assert!(rules.should_encrypt(&path(&["k"]), &[vec![" other".into()]], false));
    }
}
