//! Changing a tree at a sops index path (`set`, `unset`): missing keys and indexes are created
//! on the way down, as sops does, and an index at or past the end of a list appends.

use super::{List, ListItem, Map, MapItem, Node, Pair, PathStep};

/// Why a path cannot be set or unset. Names the path, never a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("the path must start with a key of the document, like [\"key\"]")]
    NotAKey,
    #[error("{path}: there is no such key or index")]
    NotFound { path: String },
    #[error("{path}: a {found} stands here, so the path cannot go on with {step}")]
    Mismatch {
        path: String,
        found: &'static str,
        step: String,
    },
}

fn render(steps: &[PathStep]) -> String {
    crate::crypt::display_path(steps)
}

fn kind(node: &Node) -> &'static str {
    match node {
        Node::Map(_) => "mapping",
        Node::List(_) => "list",
        Node::Scalar(_) => "scalar",
    }
}

fn step_text(step: &PathStep) -> String {
    match step {
        PathStep::Key(k) => format!("key {k:?}"),
        PathStep::Index(i) => format!("index {i}"),
    }
}

/// An empty container of the kind the next step needs.
fn empty_for(step: &PathStep) -> Node {
    match step {
        PathStep::Key(_) => Node::Map(Map::new()),
        PathStep::Index(_) => Node::List(List::default()),
    }
}

/// Sets the value at `steps` in `document`. Returns whether anything changed, so `--idempotent`
/// can leave an unchanged file alone.
pub fn set(document: &mut Map, steps: &[PathStep], value: Node) -> Result<bool, EditError> {
    let Some((PathStep::Key(first), rest)) = steps.split_first() else {
        return Err(EditError::NotAKey);
    };
    let mut node = entry(document, first, rest.first());
    for (depth, step) in rest.iter().enumerate() {
        let next = rest.get(depth + 1);
        node = match (step, node) {
            (PathStep::Key(key), Node::Map(map)) => entry(map, key, next),
            (PathStep::Index(index), Node::List(list)) => element(list, *index, next),
            (step, other) => {
                return Err(EditError::Mismatch {
                    path: render(&steps[..depth + 1]),
                    found: kind(other),
                    step: step_text(step),
                })
            }
        };
    }
    if same(node, &value) {
        return Ok(false);
    }
    match (node, value) {
        // Keep where the scalar stood, so a store that keeps the layout rewrites only its text.
        (Node::Scalar(old), Node::Scalar(new)) => old.value = new.value,
        (node, value) => *node = value,
    }
    Ok(true)
}

/// Equal values, wherever they stood in the source.
fn same(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Scalar(x), Node::Scalar(y)) => x.value == y.value,
        (Node::Map(x), Node::Map(y)) => {
            x.pairs().count() == y.pairs().count()
                && x.pairs()
                    .zip(y.pairs())
                    .all(|(p, q)| p.key == q.key && same(&p.value, &q.value))
        }
        (Node::List(x), Node::List(y)) => {
            x.nodes().count() == y.nodes().count()
                && x.nodes().zip(y.nodes()).all(|(p, q)| same(p, q))
        }
        _ => false,
    }
}

/// The value under `key`, created (as what `next` needs) when missing.
fn entry<'a>(map: &'a mut Map, key: &str, next: Option<&PathStep>) -> &'a mut Node {
    let position = map
        .0
        .iter()
        .position(|item| matches!(item, MapItem::Pair(p) if p.key == key));
    let position = position.unwrap_or_else(|| {
        map.0.push(MapItem::Pair(Pair {
            key: key.to_string(),
            value: next.map(empty_for).unwrap_or(Node::Map(Map::new())),
        }));
        map.0.len() - 1
    });
    match &mut map.0[position] {
        MapItem::Pair(pair) => &mut pair.value,
        MapItem::Comment(_) => unreachable!("position points at a pair"),
    }
}

/// The list's `index`-th value (comments not counted); an index at or past the end appends.
fn element<'a>(list: &'a mut List, index: usize, next: Option<&PathStep>) -> &'a mut Node {
    let position = list
        .0
        .iter()
        .enumerate()
        .filter(|(_, item)| matches!(item, ListItem::Node(_)))
        .nth(index)
        .map(|(at, _)| at);
    let position = position.unwrap_or_else(|| {
        list.0.push(ListItem::Node(
            next.map(empty_for).unwrap_or(Node::Map(Map::new())),
        ));
        list.0.len() - 1
    });
    match &mut list.0[position] {
        ListItem::Node(node) => node,
        ListItem::Comment(_) => unreachable!("position points at a value"),
    }
}

/// Removes the key or list element at `steps`.
pub fn unset(document: &mut Map, steps: &[PathStep]) -> Result<(), EditError> {
    let Some((last, parents)) = steps.split_last() else {
        return Err(EditError::NotAKey);
    };
    if !matches!(steps.first(), Some(PathStep::Key(_))) {
        return Err(EditError::NotAKey);
    }
    let not_found = || EditError::NotFound {
        path: render(steps),
    };
    if parents.is_empty() {
        let PathStep::Key(key) = last else {
            return Err(EditError::NotAKey);
        };
        return document.remove(key).map(|_| ()).ok_or_else(not_found);
    }
    let mut node = get_mut(document, parents).ok_or_else(not_found)?;
    match (last, &mut node) {
        (PathStep::Key(key), Node::Map(map)) => map.remove(key).map(|_| ()).ok_or_else(not_found),
        (PathStep::Index(index), Node::List(list)) => {
            let position = list
                .0
                .iter()
                .enumerate()
                .filter(|(_, item)| matches!(item, ListItem::Node(_)))
                .nth(*index)
                .map(|(at, _)| at)
                .ok_or_else(not_found)?;
            list.0.remove(position);
            Ok(())
        }
        (step, other) => Err(EditError::Mismatch {
            path: render(parents),
            found: kind(other),
            step: step_text(step),
        }),
    }
}

/// The node at `steps` (the first step a key of the document), if there is one.
pub fn get<'a>(document: &'a Map, steps: &[PathStep]) -> Option<&'a Node> {
    let (PathStep::Key(first), rest) = steps.split_first()? else {
        return None;
    };
    let mut node = document.get(first)?;
    for step in rest {
        node = match (step, node) {
            (PathStep::Key(k), Node::Map(m)) => m.get(k)?,
            (PathStep::Index(i), Node::List(l)) => l.nodes().nth(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

fn get_mut<'a>(document: &'a mut Map, steps: &[PathStep]) -> Option<&'a mut Node> {
    let (PathStep::Key(first), rest) = steps.split_first()? else {
        return None;
    };
    let mut node = document.get_mut(first)?;
    for step in rest {
        node = match (step, node) {
            (PathStep::Key(k), Node::Map(m)) => m.get_mut(k)?,
            (PathStep::Index(i), Node::List(l)) => {
                l.0.iter_mut()
                    .filter_map(|item| match item {
                        ListItem::Node(n) => Some(n),
                        ListItem::Comment(_) => None,
                    })
                    .nth(*i)?
            }
            _ => return None,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{parse_index_path, Comment, Value};

    fn s(text: &str) -> Node {
        Node::scalar(Value::Str(text.into()))
    }

    fn doc() -> Map {
        let mut db = Map::new();
        db.insert("user", s("app"));
        let mut hosts = List::default();
        hosts.0.push(ListItem::Comment(Comment::new(" primary")));
        hosts.0.push(ListItem::Node(s("a")));
        hosts.0.push(ListItem::Node(s("b")));
        db.insert("hosts", Node::List(hosts));
        let mut map = Map::new();
        map.insert("db", Node::Map(db));
        map
    }

    fn path(text: &str) -> Vec<PathStep> {
        parse_index_path(text).unwrap()
    }

    #[test]
    fn set_replaces_creates_and_appends() {
        let cases: &[(&str, &str)] = &[
            (r#"["db"]["user"]"#, "root"),
            (r#"["db"]["port"]"#, "5432"),
            (r#"["new"]["deep"]["key"]"#, "x"),
            (r#"["db"]["hosts"][1]"#, "c"),
            (r#"["db"]["hosts"][7]"#, "appended"),
            (r#"["list"][0]["name"]"#, "first"),
        ];
        for (at, value) in cases {
            let mut d = doc();
            assert!(set(&mut d, &path(at), s(value)).unwrap(), "{at}");
            let got = get(&d, &path(at)).or_else(|| {
                // an index past the end appended: the value is the last element
                let steps = path(at);
                let (_, parent) = steps.split_last().unwrap();
                match get(&d, parent) {
                    Some(Node::List(l)) => l.nodes().last(),
                    _ => None,
                }
            });
            assert_eq!(got, Some(&s(value)), "{at}");
        }
    }

    #[test]
    fn set_counts_list_indexes_without_comments() {
        let mut d = doc();
        set(&mut d, &path(r#"["db"]["hosts"][0]"#), s("z")).unwrap();
        let Some(Node::List(hosts)) = get(&d, &path(r#"["db"]["hosts"]"#)) else {
            panic!()
        };
        assert!(matches!(hosts.0[0], ListItem::Comment(_)), "comment kept");
        assert_eq!(hosts.nodes().collect::<Vec<_>>(), vec![&s("z"), &s("b")]);
    }

    #[test]
    fn setting_the_same_value_changes_nothing() {
        let mut d = doc();
        assert!(!set(&mut d, &path(r#"["db"]["user"]"#), s("app")).unwrap());
        assert_eq!(d, doc());
    }

    #[test]
    fn set_keeps_the_scalars_place_and_ignores_it_when_comparing() {
        use crate::tree::{Scalar, Span, Style};
        let mut d = doc();
        let span = Some(Span {
            range: 10..13,
            style: Style::DoubleQuoted,
        });
        *d.get_mut("db")
            .and_then(|n| match n {
                Node::Map(m) => m.get_mut("user"),
                _ => None,
            })
            .unwrap() = Node::Scalar(Scalar {
            value: Value::Str("app".into()),
            span: span.clone(),
        });
        assert!(!set(&mut d, &path(r#"["db"]["user"]"#), s("app")).unwrap());
        assert!(set(&mut d, &path(r#"["db"]["user"]"#), s("root")).unwrap());
        let Some(Node::Scalar(user)) = get(&d, &path(r#"["db"]["user"]"#)) else {
            panic!()
        };
        assert_eq!((user.value.as_str(), &user.span), (Some("root"), &span));
    }

    #[test]
    fn set_through_a_scalar_is_an_error() {
        let mut d = doc();
        let err = set(&mut d, &path(r#"["db"]["user"]["x"]"#), s("v")).unwrap_err();
        assert!(
            matches!(
                err,
                EditError::Mismatch {
                    found: "scalar",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(set(&mut d, &path("[0]"), s("v")), Err(EditError::NotAKey));
    }

    #[test]
    fn unset_removes_keys_and_elements() {
        let mut d = doc();
        unset(&mut d, &path(r#"["db"]["hosts"][0]"#)).unwrap();
        assert_eq!(
            get(&d, &path(r#"["db"]["hosts"][0]"#)),
            Some(&s("b")),
            "the element after moved up"
        );
        unset(&mut d, &path(r#"["db"]["user"]"#)).unwrap();
        assert_eq!(get(&d, &path(r#"["db"]["user"]"#)), None);
        unset(&mut d, &path(r#"["db"]"#)).unwrap();
        assert!(d.is_empty());
    }

    #[test]
    fn unset_of_a_missing_path_names_it() {
        for at in [r#"["nope"]"#, r#"["db"]["nope"]"#, r#"["db"]["hosts"][9]"#] {
            let err = unset(&mut doc(), &path(at)).unwrap_err();
            assert!(matches!(err, EditError::NotFound { .. }), "{at}: {err}");
            assert!(err.to_string().contains("nope") || err.to_string().contains('9'));
        }
    }
}
