//! sops' index path syntax, used by `--extract`, `set` and `unset`: `["db"]["hosts"][0]`.

use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid tree path {path:?}: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: &'static str,
}

/// Parses `["a"]['b'][0]` into steps. Keys are quoted with `"` or `'`; indexes are bare integers.
pub fn parse_index_path(path: &str) -> Result<Vec<PathStep>, PathError> {
    let fail = |reason| PathError {
        path: path.to_string(),
        reason,
    };
    let mut steps = Vec::new();
    let mut rest = path.trim();
    if rest.is_empty() {
        return Err(fail("the path is empty"));
    }
    while !rest.is_empty() {
        rest = rest.strip_prefix('[').ok_or_else(|| fail("expected '['"))?;
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'');
        if let Some(q) = quote {
            let body = &rest[1..];
            let end = body
                .find(q)
                .ok_or_else(|| fail("unterminated quoted key"))?;
            steps.push(PathStep::Key(body[..end].to_string()));
            rest = body[end + 1..]
                .strip_prefix(']')
                .ok_or_else(|| fail("expected ']' after a key"))?;
        } else {
            let end = rest.find(']').ok_or_else(|| fail("expected ']'"))?;
            let index = rest[..end]
                .trim()
                .parse::<usize>()
                .map_err(|_| fail("an index must be a non-negative integer; quote keys"))?;
            steps.push(PathStep::Index(index));
            rest = &rest[end + 1..];
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_indexes() {
        assert_eq!(
            parse_index_path(r#"["a"]['b c'][2]"#).unwrap(),
            vec![
                PathStep::Key("a".into()),
                PathStep::Key("b c".into()),
                PathStep::Index(2)
            ]
        );
    }

    #[test]
    fn rejects_malformed_paths() {
        for bad in ["", "a", "[\"a\"", "[x]", "[\"a\"]b", "[-1]"] {
            assert!(parse_index_path(bad).is_err(), "{bad}");
        }
    }
}
