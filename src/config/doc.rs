//! One document tree for both inputs of the endpoint schema: TOML config files
//! and the admin API's JSON. Each node knows where it came from (a byte span in
//! a file, or a JSON pointer), so one decoder can report every error at the
//! place it was made, in the words of either input.

use std::fmt;
use std::ops::Range;

/// Where a node (or a missing member) is in its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loc {
    /// Byte range in a TOML file.
    Span(Range<usize>),
    /// RFC 6901 JSON pointer into an admin request document.
    Pointer(String),
}

impl Loc {
    /// The location of member `name` of the node at `self`. For a file, the
    /// member's own span is not known when it is absent: the table's is used.
    pub fn member(&self, name: &str) -> Loc {
        match self {
            Loc::Span(r) => Loc::Span(r.clone()),
            Loc::Pointer(p) => Loc::Pointer(format!("{p}/{}", escape_pointer(name))),
        }
    }

    pub fn pointer(&self) -> Option<&str> {
        match self {
            Loc::Pointer(p) => Some(p),
            Loc::Span(_) => None,
        }
    }
}

fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A value of either input format.
#[derive(Debug, Clone)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    /// A TOML date or time: no JSON counterpart.
    Datetime(String),
    Array(Vec<Node>),
    Table(Vec<(Key, Node)>),
}

#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub val: Val,
    pub loc: Loc,
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match self.val {
            Val::Null => "null",
            Val::Bool(_) => "a boolean",
            Val::Int(_) => "an integer",
            Val::Float(_) => "a float",
            Val::Str(_) => "a string",
            Val::Datetime(_) => "a datetime",
            Val::Array(_) => "an array",
            Val::Table(_) => "a table",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.val, Val::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.val {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn entries(&self) -> Option<&[(Key, Node)]> {
        match &self.val {
            Val::Table(t) => Some(t),
            _ => None,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v)
    }

    /// Builds the tree of a JSON document; every node carries its pointer.
    pub fn from_json(value: &serde_json::Value) -> Node {
        Self::from_json_at(value, String::new())
    }

    fn from_json_at(value: &serde_json::Value, pointer: String) -> Node {
        use serde_json::Value as J;
        let val = match value {
            J::Null => Val::Null,
            J::Bool(b) => Val::Bool(*b),
            J::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Val::Int(i128::from(i))
                } else if let Some(u) = n.as_u64() {
                    Val::Int(i128::from(u))
                } else {
                    Val::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            J::String(s) => Val::Str(s.clone()),
            J::Array(items) => Val::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Self::from_json_at(v, format!("{pointer}/{i}")))
                    .collect(),
            ),
            J::Object(map) => Val::Table(
                map.iter()
                    .map(|(k, v)| {
                        let p = format!("{pointer}/{}", escape_pointer(k));
                        (
                            Key {
                                name: k.clone(),
                                loc: Loc::Pointer(p.clone()),
                            },
                            Self::from_json_at(v, p),
                        )
                    })
                    .collect(),
            ),
        };
        Node {
            val,
            loc: Loc::Pointer(pointer),
        }
    }

    /// Builds the tree of a parsed TOML document; every node carries its span.
    pub fn from_toml(value: &toml::Spanned<toml::de::DeValue<'_>>) -> Node {
        use toml::de::DeValue as T;
        let loc = Loc::Span(value.span());
        let val = match value.get_ref() {
            T::String(s) => Val::Str(s.to_string()),
            T::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                match i128::from_str_radix(&digits, i.radix()) {
                    Ok(n) => Val::Int(n),
                    Err(_) => Val::Float(f64::NAN),
                }
            }
            T::Float(f) => Val::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN)),
            T::Boolean(b) => Val::Bool(*b),
            T::Datetime(d) => Val::Datetime(d.to_string()),
            T::Array(items) => Val::Array(items.iter().map(Self::from_toml).collect()),
            T::Table(t) => Val::Table(Self::toml_entries(t)),
        };
        Node { val, loc }
    }

    pub fn from_toml_table(table: &toml::Spanned<toml::de::DeTable<'_>>) -> Node {
        Node {
            val: Val::Table(Self::toml_entries(table.get_ref())),
            loc: Loc::Span(table.span()),
        }
    }

    fn toml_entries(t: &toml::de::DeTable<'_>) -> Vec<(Key, Node)> {
        t.iter()
            .map(|(k, v)| {
                (
                    Key {
                        name: k.get_ref().to_string(),
                        loc: Loc::Span(k.span()),
                    },
                    Self::from_toml(v),
                )
            })
            .collect()
    }
}

/// One problem found in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub loc: Loc,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// Collects every problem of a document instead of stopping at the first.
#[derive(Debug, Default)]
pub struct Diags {
    pub list: Vec<Diag>,
    /// Whether unknown keys are errors (files) or ignored (admin JSON).
    pub strict: bool,
}

impl Diags {
    pub fn strict() -> Self {
        Diags {
            list: Vec::new(),
            strict: true,
        }
    }

    pub fn lenient() -> Self {
        Diags::default()
    }

    pub fn push(&mut self, loc: &Loc, message: impl Into<String>) {
        self.list.push(Diag {
            loc: loc.clone(),
            message: message.into(),
            hint: None,
        });
    }

    pub fn push_hint(&mut self, loc: &Loc, message: impl Into<String>, hint: impl Into<String>) {
        self.list.push(Diag {
            loc: loc.clone(),
            message: message.into(),
            hint: Some(hint.into()),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Reports keys of `table` that the schema does not know (files only).
    pub fn unknown_keys(&mut self, table: &Node, what: &str, known: &[&str]) {
        if !self.strict {
            return;
        }
        for (k, _) in table.entries().unwrap_or(&[]) {
            if !known.contains(&k.name.as_str()) {
                let hint = match closest(&k.name, known) {
                    Some(c) => format!("did you mean `{c}`? {what} takes: {}", known.join(", ")),
                    None => format!("{what} takes: {}", known.join(", ")),
                };
                self.push_hint(&k.loc, format!("unknown key `{}` in {what}", k.name), hint);
            }
        }
    }

    // Typed accessors: each returns None (after recording why) when the member is
    // present with the wrong type; `Ok(None)`-like absence is a plain None too,
    // so callers that require a member use `required`.

    pub fn table<'a>(&mut self, node: &'a Node, what: &str) -> Option<&'a Node> {
        if node.entries().is_some() {
            Some(node)
        } else {
            let kind = if node.loc.pointer().is_some() {
                "an object"
            } else {
                "a table"
            };
            self.push(
                &node.loc,
                format!("{what} must be {kind}, not {}", node.type_name()),
            );
            None
        }
    }

    pub fn string<'a>(&mut self, node: &'a Node, what: &str) -> Option<&'a str> {
        match node.as_str() {
            Some(s) => Some(s),
            None => {
                self.push(
                    &node.loc,
                    format!("{what} must be a string, not {}", node.type_name()),
                );
                None
            }
        }
    }

    pub fn integer(&mut self, node: &Node, what: &str) -> Option<i128> {
        match node.val {
            Val::Int(i) => Some(i),
            _ => {
                self.push(
                    &node.loc,
                    format!("{what} must be an integer, not {}", node.type_name()),
                );
                None
            }
        }
    }

    pub fn int_in<T: TryFrom<i128>>(
        &mut self,
        node: &Node,
        what: &str,
        min: i128,
        max: i128,
    ) -> Option<T> {
        let i = self.integer(node, what)?;
        if i < min || i > max {
            self.push(
                &node.loc,
                format!("{what} must be between {min} and {max}, not {i}"),
            );
            return None;
        }
        T::try_from(i).ok()
    }

    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.val {
            Val::Bool(b) => Some(b),
            _ => {
                self.push(
                    &node.loc,
                    format!("{what} must be a boolean, not {}", node.type_name()),
                );
                None
            }
        }
    }
}

/// The known name nearest to a misspelt one, if it is near enough to suggest.
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_nodes_carry_pointers() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"data":{"a/b":[1,{"c~":"x"}]}}"#).unwrap();
        let n = Node::from_json(&v);
        let arr = n.get("data").unwrap().get("a/b").unwrap();
        assert_eq!(arr.loc, Loc::Pointer("/data/a~1b".into()));
        let Val::Array(items) = &arr.val else {
            panic!("array expected")
        };
        assert_eq!(
            items[1].get("c~").unwrap().loc,
            Loc::Pointer("/data/a~1b/1/c~0".into())
        );
    }

    #[test]
    fn toml_integers_keep_radix_and_underscores() {
        let (t, errs) = toml::de::DeTable::parse_recoverable("a = 0x10\nb = 1_000\n");
        assert!(errs.is_empty());
        let n = Node::from_toml_table(&t);
        assert!(matches!(n.get("a").unwrap().val, Val::Int(16)));
        assert!(matches!(n.get("b").unwrap().val, Val::Int(1000)));
    }

    #[test]
    fn suggests_near_names() {
        assert_eq!(closest("respnse", &["verb", "response"]), Some("response"));
        assert_eq!(closest("zzzzzz", &["verb", "path"]), None);
    }
}
