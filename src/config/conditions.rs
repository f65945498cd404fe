//! Request conditions of an endpoint (`match`): query parameters, headers and
//! cookies (equals / regex / present / absent), and the request body (JSON
//! equality, JSON subset, a JSON pointer equal to a value, regex, contains).
//! Decoded from either input with errors at their place, compiled once.

use serde_json::{json, Map, Value};

use super::doc::{Diags, Node, Val};

const MATCH_KEYS: &[&str] = &["query", "headers", "cookies", "body"];
const VALUE_KEYS: &[&str] = &["equals", "regex", "present"];
const BODY_KEYS: &[&str] = &[
    "json",
    "json_subset",
    "json_pointer",
    "equals",
    "regex",
    "contains",
];

/// A condition on one named value (a query parameter, header or cookie).
#[derive(Debug, Clone, PartialEq)]
pub enum ValueMatch {
    Equals(String),
    Regex(String),
    /// `true`: the name must be there; `false`: it must not.
    Present(bool),
}

/// A condition on the request body.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyMatch {
    /// The body is JSON equal to this value (numbers compare by value).
    Json(Value),
    /// The body is JSON that holds this value: objects may have more
    /// members, arrays more elements.
    JsonSubset(Value),
    /// The value at this JSON pointer equals `equals`.
    JsonPointer {
        pointer: String,
        equals: Value,
    },
    Regex(String),
    Contains(String),
}

/// All conditions of an endpoint; every one must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MatchSpec {
    pub query: Vec<(String, ValueMatch)>,
    /// Names as written; matched case-insensitively.
    pub headers: Vec<(String, ValueMatch)>,
    pub cookies: Vec<(String, ValueMatch)>,
    pub body: Vec<BodyMatch>,
}

impl MatchSpec {
    pub fn is_empty(&self) -> bool {
        self.query.is_empty()
            && self.headers.is_empty()
            && self.cookies.is_empty()
            && self.body.is_empty()
    }

    pub fn needs_body(&self) -> bool {
        !self.body.is_empty()
    }

    /// The JSON form, as the admin API returns it and the stores keep it.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (key, list) in [
            ("query", &self.query),
            ("headers", &self.headers),
            ("cookies", &self.cookies),
        ] {
            if !list.is_empty() {
                let mut o = Map::new();
                for (name, vm) in list {
                    o.insert(name.clone(), vm.to_json());
                }
                m.insert(key.into(), Value::Object(o));
            }
        }
        if !self.body.is_empty() {
            let list: Vec<Value> = self.body.iter().map(BodyMatch::to_json).collect();
            m.insert("body".into(), Value::Array(list));
        }
        Value::Object(m)
    }
}

impl MatchSpec {
    /// The conditions as text that is the same for equal conditions written
    /// in another order: names sorted (header names in lower case), body
    /// conditions sorted, object members sorted. Part of the conflict key.
    pub fn canonical(&self) -> String {
        let named = |list: &[(String, ValueMatch)], fold: bool| {
            let mut v: Vec<(String, Value)> = list
                .iter()
                .map(|(k, m)| {
                    let k = if fold {
                        k.to_ascii_lowercase()
                    } else {
                        k.clone()
                    };
                    (k, m.to_json())
                })
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v.into_iter()
                .map(|(k, m)| json!([k, m]))
                .collect::<Vec<_>>()
        };
        let mut body: Vec<String> = self
            .body
            .iter()
            .map(|b| sorted(&b.to_json()).to_string())
            .collect();
        body.sort();
        json!([
            named(&self.query, false),
            named(&self.headers, true),
            named(&self.cookies, false),
            body
        ])
        .to_string()
    }
}

/// `v` with the members of every object in name order.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut entries: Vec<(&String, &Value)> = o.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, x)| (k.clone(), sorted(x)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

impl ValueMatch {
    fn to_json(&self) -> Value {
        match self {
            ValueMatch::Equals(s) => json!(s),
            ValueMatch::Regex(r) => json!({ "regex": r }),
            ValueMatch::Present(p) => json!({ "present": p }),
        }
    }
}

impl BodyMatch {
    fn to_json(&self) -> Value {
        match self {
            BodyMatch::Json(v) => json!({ "json": v }),
            BodyMatch::JsonSubset(v) => json!({ "json_subset": v }),
            BodyMatch::JsonPointer { pointer, equals } => {
                json!({ "json_pointer": pointer, "equals": equals })
            }
            BodyMatch::Regex(r) => json!({ "regex": r }),
            BodyMatch::Contains(c) => json!({ "contains": c }),
        }
    }
}

/// A condition regex: searched in the value (anchor it with `^...$` to match
/// the whole value).
pub fn compile_regex(s: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(s)
        .size_limit(crate::limits::regex_bytes())
        .build()
}

/// Any document value as JSON (TOML tables become objects, datetimes strings).
pub fn node_to_json(n: &Node) -> Value {
    match &n.val {
        Val::Null => Value::Null,
        Val::Bool(b) => json!(b),
        Val::Int(i) => match i64::try_from(*i) {
            Ok(v) => json!(v),
            Err(_) => u64::try_from(*i).map_or(Value::Null, |v| json!(v)),
        },
        Val::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Val::Str(s) | Val::Datetime(s) => json!(s),
        Val::Array(items) => Value::Array(items.iter().map(node_to_json).collect()),
        Val::Table(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.name.clone(), node_to_json(v)))
                .collect(),
        ),
    }
}

/// Decodes `match`; errors go to `diags`.
pub fn decode(n: &Node, diags: &mut Diags) -> Option<MatchSpec> {
    let t = diags.table(n, "match")?;
    diags.unknown_keys(t, "match", MATCH_KEYS);
    let before = diags.list.len();
    let mut spec = MatchSpec::default();
    for (key, out) in [
        ("query", &mut spec.query),
        ("headers", &mut spec.headers),
        ("cookies", &mut spec.cookies),
    ] {
        let Some(list) = t.get(key).filter(|x| !x.is_null()) else {
            continue;
        };
        let what = format!("match.{key}");
        let Some(list) = diags.table(list, &what) else {
            continue;
        };
        let mut seen: Vec<String> = Vec::new();
        for (k, v) in list.entries().unwrap_or(&[]) {
            let folded = if key == "headers" {
                k.name.to_ascii_lowercase()
            } else {
                k.name.clone()
            };
            if k.name.is_empty() {
                diags.push(&k.loc, format!("{what} has an empty name"));
                continue;
            }
            if key == "headers" && !k.name.bytes().all(super::endpoint::is_tchar) {
                diags.push_hint(
                    &k.loc,
                    format!(
                        "{what} name `{}` is not a valid HTTP token",
                        k.name.escape_default()
                    ),
                    "names take letters, digits and !#$%&'*+-.^_`|~ (no spaces, no `:`)",
                );
                continue;
            }
            if seen.contains(&folded) {
                diags.push(&k.loc, format!("{what} names `{}` twice", k.name));
                continue;
            }
            seen.push(folded);
            if let Some(vm) = decode_value(v, &format!("{what}.{}", k.name), diags) {
                out.push((k.name.clone(), vm));
            }
        }
    }
    if let Some(b) = t.get("body").filter(|x| !x.is_null()) {
        match &b.val {
            Val::Array(items) => {
                for item in items {
                    if let Some(bm) = decode_body(item, diags) {
                        spec.body.push(bm);
                    }
                }
            }
            _ => {
                if let Some(bm) = decode_body(b, diags) {
                    spec.body.push(bm);
                }
            }
        }
    }
    (diags.list.len() == before).then_some(spec)
}

fn decode_value(n: &Node, what: &str, diags: &mut Diags) -> Option<ValueMatch> {
    if let Some(s) = n.as_str() {
        return Some(ValueMatch::Equals(s.to_string()));
    }
    let Some(t) = n.entries() else {
        diags.push_hint(
            &n.loc,
            format!(
                "{what} must be a string or a condition, not {}",
                n.type_name()
            ),
            "write \"value\", { regex = \"...\" }, { present = true } or { present = false }",
        );
        return None;
    };
    diags.unknown_keys(n, what, VALUE_KEYS);
    if t.len() != 1 {
        diags.push_hint(
            &n.loc,
            format!("{what} must have exactly one of equals, regex, present"),
            "write one condition per name",
        );
        return None;
    }
    let (k, v) = &t[0];
    match k.name.as_str() {
        "equals" => diags
            .string(v, &format!("{what}.equals"))
            .map(|s| ValueMatch::Equals(s.to_string())),
        "regex" => {
            let s = diags.string(v, &format!("{what}.regex"))?;
            match compile_regex(s) {
                Ok(_) => Some(ValueMatch::Regex(s.to_string())),
                Err(e) => {
                    diags.push(
                        &v.loc,
                        format!(
                            "{what}.regex is not a valid regular expression: {}",
                            one_line(&e)
                        ),
                    );
                    None
                }
            }
        }
        "present" => diags
            .boolean(v, &format!("{what}.present"))
            .map(ValueMatch::Present),
        other => {
            // Strict decoding reported the unknown key already.
            if !diags.strict {
                diags.push_hint(
                    &k.loc,
                    format!("{what} has an unknown condition `{other}`"),
                    "use equals, regex or present",
                );
            }
            None
        }
    }
}

fn decode_body(n: &Node, diags: &mut Diags) -> Option<BodyMatch> {
    let Some(t) = n.entries() else {
        diags.push_hint(
            &n.loc,
            format!("match.body must be a condition, not {}", n.type_name()),
            "write { json = ... }, { json_subset = ... }, { json_pointer = \"/a\", equals = ... }, { regex = \"...\" } or { contains = \"...\" }",
        );
        return None;
    };
    diags.unknown_keys(n, "match.body", BODY_KEYS);
    let get = |k: &str| t.iter().find(|(key, _)| key.name == k).map(|(_, v)| v);
    let kinds: Vec<&str> = ["json", "json_subset", "json_pointer", "regex", "contains"]
        .into_iter()
        .filter(|k| get(k).is_some())
        .collect();
    if kinds.len() != 1 {
        diags.push_hint(
            &n.loc,
            "a match.body condition must have exactly one of json, json_subset, json_pointer, regex, contains",
            "give several conditions as a list: body = [ {...}, {...} ]",
        );
        return None;
    }
    if kinds[0] != "json_pointer" {
        if let Some(e) = get("equals") {
            diags.push(&e.loc, "match.body.equals goes with json_pointer only");
            return None;
        }
    }
    let v = get(kinds[0])?;
    match kinds[0] {
        "json" => Some(BodyMatch::Json(node_to_json(v))),
        "json_subset" => Some(BodyMatch::JsonSubset(node_to_json(v))),
        "json_pointer" => {
            let p = diags.string(v, "match.body.json_pointer")?;
            if !(p.is_empty() || p.starts_with('/')) {
                diags.push_hint(
                    &v.loc,
                    "match.body.json_pointer must be empty or start with `/`",
                    "for example \"/order/id\" (RFC 6901)",
                );
                return None;
            }
            let Some(equals) = get("equals") else {
                diags.push(
                    &n.loc,
                    "match.body.json_pointer needs `equals`, the value expected there",
                );
                return None;
            };
            Some(BodyMatch::JsonPointer {
                pointer: p.to_string(),
                equals: node_to_json(equals),
            })
        }
        "regex" => {
            let s = diags.string(v, "match.body.regex")?;
            match compile_regex(s) {
                Ok(_) => Some(BodyMatch::Regex(s.to_string())),
                Err(e) => {
                    diags.push(
                        &v.loc,
                        format!(
                            "match.body.regex is not a valid regular expression: {}",
                            one_line(&e)
                        ),
                    );
                    None
                }
            }
        }
        _ => diags
            .string(v, "match.body.contains")
            .map(|s| BodyMatch::Contains(s.to_string())),
    }
}

/// A regex error on one line; a pattern over the size limit names the setting.
pub(crate) fn one_line(e: &regex::Error) -> String {
    if let regex::Error::CompiledTooBig(limit) = e {
        return format!(
            "it compiles to more than {limit} bytes (server.max_regex_bytes); simplify it or raise the limit"
        );
    }
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Whether `actual` holds `expected`: every member of an expected object is in
/// the actual one (recursively), every element of an expected array matches
/// some element of the actual one; other values are equal.
pub fn json_subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|w| json_subset(v, w))),
        (Value::Array(e), Value::Array(a)) => e.iter().all(|v| a.iter().any(|w| json_subset(v, w))),
        _ => json_eq(expected, actual),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_json(v: Value) -> (Option<MatchSpec>, Vec<String>) {
        let n = Node::from_json(&v);
        let mut d = Diags::lenient();
        let m = decode(&n, &mut d);
        (
            m,
            d.list
                .iter()
                .map(|x| format!("{:?} {}", x.loc.pointer(), x.message))
                .collect(),
        )
    }

    #[test]
    fn decodes_every_form() {
        let (m, errs) = decode_json(json!({
            "query": {"a": "1", "b": {"regex": "^[0-9]+$"}, "c": {"present": false}},
            "headers": {"X-T": {"equals": "v"}},
            "cookies": {"s": {"present": true}},
            "body": [{"json_subset": {"a": 1}}, {"json_pointer": "/a", "equals": 1}, {"contains": "x"}]
        }));
        assert!(errs.is_empty(), "{errs:?}");
        let m = m.unwrap();
        assert_eq!(m.query.len(), 3);
        assert_eq!(m.body.len(), 3);
        let again = decode_json(m.to_json()).0.unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn errors_point_at_the_field() {
        let (_, errs) = decode_json(json!({
            "query": {"a": 1, "b": {"regex": "("}, "c": {"present": true, "equals": "x"}},
            "body": {"json_pointer": "a", "equals": 1},
            "bogus": 1
        }));
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(
            errs[0].starts_with("Some(\"/query/a\") match.query.a must be a string"),
            "{errs:?}"
        );
        assert!(errs[1].starts_with("Some(\"/query/b/regex\")"), "{errs:?}");
        assert!(errs[2].starts_with("Some(\"/query/c\")"), "{errs:?}");
        assert!(
            errs[3].starts_with("Some(\"/body/json_pointer\")"),
            "{errs:?}"
        );
    }

    #[test]
    fn equal_conditions_in_another_order_are_one_key() {
        let key = |v: Value| decode_json(v).0.unwrap().canonical();
        assert_eq!(
            key(
                json!({"query": {"a": "1", "b": "2"}, "headers": {"X-A": "v"},
                       "body": [{"contains": "x"}, {"json": {"k": 1, "l": [{"m": 1, "n": 2}]}}]})
            ),
            key(
                json!({"headers": {"x-a": "v"}, "query": {"b": "2", "a": "1"},
                       "body": [{"json": {"l": [{"n": 2, "m": 1}], "k": 1}}, {"contains": "x"}]})
            )
        );
        assert_ne!(
            key(json!({"query": {"a": "1"}})),
            key(json!({"query": {"a": {"regex": "1"}}}))
        );
        assert_ne!(
            key(json!({"cookies": {"a": "1"}})),
            key(json!({"cookies": {"A": "1"}}))
        );
    }

    #[test]
    fn json_comparisons() {
        assert!(json_eq(&json!({"a": 1}), &json!({"a": 1.0})));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(json_subset(
            &json!({"a": {"b": [2]}}),
            &json!({"a": {"b": [1, 2], "c": 3}, "d": 4})
        ));
        assert!(!json_subset(
            &json!({"a": {"b": [5]}}),
            &json!({"a": {"b": [1, 2]}})
        ));
        assert!(!json_subset(&json!({"x": null}), &json!({})));
    }
}
