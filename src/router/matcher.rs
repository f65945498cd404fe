//! Conditions compiled for the request path, and the facts of one request
//! they are checked against (parsed lazily, at most once per request).

use std::cell::OnceCell;

use bytes::Bytes;
use serde_json::Value;

use crate::config::conditions::{
    compile_regex, json_eq, json_subset, BodyMatch, MatchSpec, ValueMatch,
};

enum Check {
    Equals(String),
    Regex(regex::Regex),
    Present(bool),
}

enum BodyCheck {
    Json(Value),
    JsonSubset(Value),
    Pointer(String, Value),
    Regex(regex::Regex),
    Contains(String),
}

/// An endpoint's conditions, ready to check.
pub struct Conditions {
    query: Vec<(String, Check)>,
    /// Lower-case names.
    headers: Vec<(String, Check)>,
    cookies: Vec<(String, Check)>,
    body: Vec<BodyCheck>,
}

impl std::fmt::Debug for Conditions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conditions")
    }
}

/// What a request's body is to the conditions.
#[derive(Debug, Clone)]
pub enum Body {
    /// Not read (yet): no endpoint asked for it.
    Unread,
    Read(Bytes),
    /// Longer than the gateway reads for matching: body conditions fail.
    TooLarge,
}

/// The parts of a request conditions look at.
pub struct Facts<'a> {
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub body: Body,
    query_pairs: OnceCell<Vec<(String, String)>>,
    cookies: OnceCell<Vec<(String, String)>>,
    json: OnceCell<Option<Value>>,
}

impl<'a> Facts<'a> {
    pub fn new(query: Option<&'a str>, headers: &'a http::HeaderMap) -> Facts<'a> {
        Facts {
            query,
            headers,
            body: Body::Unread,
            query_pairs: OnceCell::new(),
            cookies: OnceCell::new(),
            json: OnceCell::new(),
        }
    }

    pub fn set_body(&mut self, body: Body) {
        self.body = body;
        self.json = OnceCell::new();
    }

    /// Query parameters, percent-decoded (`+` is a space), in order.
    pub fn query_pairs(&self) -> &[(String, String)] {
        self.query_pairs.get_or_init(|| {
            self.query
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default()
        })
    }

    /// Cookies of every `Cookie` header, in order.
    pub fn cookies(&self) -> &[(String, String)] {
        self.cookies.get_or_init(|| {
            self.headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|c| {
                    let (k, v) = c.split_once('=')?;
                    Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                })
                .collect()
        })
    }

    pub fn body_bytes(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Read(b) => Some(b),
            _ => None,
        }
    }

    /// The body as JSON, when it is JSON.
    pub fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| {
                self.body_bytes()
                    .and_then(|b| serde_json::from_slice(b).ok())
            })
            .as_ref()
    }
}

/// Why an endpoint's conditions did not hold: the first failed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed(pub String);

fn compile_check(vm: &ValueMatch) -> Check {
    match vm {
        ValueMatch::Equals(s) => Check::Equals(s.clone()),
        // Checked when decoded: a regex that does not compile never gets here,
        // but rather than panic, one that did not would match nothing.
        ValueMatch::Regex(r) => match compile_regex(r) {
            Ok(re) => Check::Regex(re),
            Err(_) => Check::Present(false),
        },
        ValueMatch::Present(p) => Check::Present(*p),
    }
}

impl Conditions {
    pub fn compile(m: &MatchSpec) -> Conditions {
        let named = |list: &[(String, ValueMatch)], lower: bool| {
            list.iter()
                .map(|(k, v)| {
                    let name = if lower {
                        k.to_ascii_lowercase()
                    } else {
                        k.clone()
                    };
                    (name, compile_check(v))
                })
                .collect()
        };
        Conditions {
            query: named(&m.query, false),
            headers: named(&m.headers, true),
            cookies: named(&m.cookies, false),
            body: m
                .body
                .iter()
                .map(|b| match b {
                    BodyMatch::Json(v) => BodyCheck::Json(v.clone()),
                    BodyMatch::JsonSubset(v) => BodyCheck::JsonSubset(v.clone()),
                    BodyMatch::JsonPointer { pointer, equals } => {
                        BodyCheck::Pointer(pointer.clone(), equals.clone())
                    }
                    BodyMatch::Regex(r) => match compile_regex(r) {
                        Ok(re) => BodyCheck::Regex(re),
                        Err(_) => BodyCheck::Contains("\u{0}never\u{0}".into()),
                    },
                    BodyMatch::Contains(c) => BodyCheck::Contains(c.clone()),
                })
                .collect(),
        }
    }

    pub fn needs_body(&self) -> bool {
        !self.body.is_empty()
    }

    /// Checks every condition but the body's.
    pub fn check_head(&self, f: &Facts<'_>) -> Result<(), Failed> {
        for (name, c) in &self.query {
            let values = f
                .query_pairs()
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            check_values(c, values).map_err(|why| Failed(format!("query `{name}` {why}")))?;
        }
        for (name, c) in &self.headers {
            let values = f
                .headers
                .get_all(name.as_str())
                .iter()
                .map(|v| v.to_str().unwrap_or(""));
            check_values(c, values).map_err(|why| Failed(format!("header `{name}` {why}")))?;
        }
        for (name, c) in &self.cookies {
            let values = f
                .cookies()
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            check_values(c, values).map_err(|why| Failed(format!("cookie `{name}` {why}")))?;
        }
        Ok(())
    }

    /// Checks the body conditions; the body must have been read if there are any.
    pub fn check_body(&self, f: &Facts<'_>) -> Result<(), Failed> {
        if self.body.is_empty() {
            return Ok(());
        }
        let bytes = match &f.body {
            Body::Read(b) => b,
            Body::TooLarge => return Err(Failed("the body is too large to match".into())),
            Body::Unread => return Err(Failed("the body was not read".into())),
        };
        for c in &self.body {
            let ok = match c {
                BodyCheck::Json(v) => f.json().is_some_and(|j| json_eq(v, j)),
                BodyCheck::JsonSubset(v) => f.json().is_some_and(|j| json_subset(v, j)),
                BodyCheck::Pointer(p, v) => f
                    .json()
                    .and_then(|j| j.pointer(p))
                    .is_some_and(|x| json_eq(v, x)),
                BodyCheck::Regex(re) => re.is_match(&String::from_utf8_lossy(bytes)),
                BodyCheck::Contains(s) => contains(bytes, s.as_bytes()),
            };
            if !ok {
                return Err(Failed(format!("body does not match {}", describe_body(c))));
            }
        }
        Ok(())
    }
}

fn check_values<'v>(c: &Check, mut values: impl Iterator<Item = &'v str>) -> Result<(), String> {
    match c {
        Check::Present(true) => values.next().map(|_| ()).ok_or_else(|| "is missing".into()),
        Check::Present(false) => match values.next() {
            None => Ok(()),
            Some(_) => Err("is present".into()),
        },
        Check::Equals(want) => {
            let seen: Vec<&str> = values.collect();
            if seen.iter().any(|v| v == want) {
                Ok(())
            } else if seen.is_empty() {
                Err(format!("is missing (expected `{want}`)"))
            } else {
                Err(format!("is `{}`, expected `{want}`", seen.join(", ")))
            }
        }
        Check::Regex(re) => {
            let seen: Vec<&str> = values.collect();
            if seen.iter().any(|v| re.is_match(v)) {
                Ok(())
            } else if seen.is_empty() {
                Err(format!("is missing (expected to match `{}`)", re.as_str()))
            } else {
                Err(format!(
                    "is `{}`, which does not match `{}`",
                    seen.join(", "),
                    re.as_str()
                ))
            }
        }
    }
}

fn describe_body(c: &BodyCheck) -> String {
    match c {
        BodyCheck::Json(v) => format!("json {v}"),
        BodyCheck::JsonSubset(v) => format!("json_subset {v}"),
        BodyCheck::Pointer(p, v) => format!("json_pointer `{p}` = {v}"),
        BodyCheck::Regex(re) => format!("regex `{}`", re.as_str()),
        BodyCheck::Contains(s) => format!("contains `{s}`"),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conditions(v: Value) -> Conditions {
        let n = crate::config::doc::Node::from_json(&v);
        let mut d = crate::config::doc::Diags::lenient();
        Conditions::compile(&crate::config::conditions::decode(&n, &mut d).unwrap())
    }

    #[test]
    fn query_headers_cookies() {
        let c = conditions(json!({
            "query": {"status": "open", "page": {"regex": "^[0-9]+$"}, "debug": {"present": false}},
            "headers": {"X-Tenant": "acme"},
            "cookies": {"session": {"present": true}}
        }));
        let mut h = http::HeaderMap::new();
        h.insert("x-tenant", "acme".parse().unwrap());
        h.insert("cookie", "a=1; session=xyz".parse().unwrap());
        let f = Facts::new(Some("status=open&page=12"), &h);
        assert_eq!(c.check_head(&f), Ok(()));
        let f = Facts::new(Some("status=open&page=x"), &h);
        assert_eq!(
            c.check_head(&f).unwrap_err().0,
            "query `page` is `x`, which does not match `^[0-9]+$`"
        );
        let f = Facts::new(Some("status=open&page=1&debug"), &h);
        assert_eq!(c.check_head(&f).unwrap_err().0, "query `debug` is present");
        let f = Facts::new(Some("status=open%20x&page=1"), &h);
        assert_eq!(
            c.check_head(&f).unwrap_err().0,
            "query `status` is `open x`, expected `open`"
        );
        let empty = http::HeaderMap::new();
        let f = Facts::new(Some("status=open&page=1"), &empty);
        assert_eq!(
            c.check_head(&f).unwrap_err().0,
            "header `x-tenant` is missing (expected `acme`)"
        );
    }

    #[test]
    fn bodies() {
        let c = conditions(
            json!({"body": [{"json_subset": {"a": {"b": 1}}}, {"json_pointer": "/c/0", "equals": "x"}, {"regex": "\"a\""}, {"contains": "\"c\""}]}),
        );
        let h = http::HeaderMap::new();
        let mut f = Facts::new(None, &h);
        assert!(c.needs_body());
        assert!(c.check_body(&f).is_err());
        f.set_body(Body::Read(Bytes::from_static(
            br#"{"a": {"b": 1.0, "z": 2}, "c": ["x"]}"#,
        )));
        assert_eq!(c.check_body(&f), Ok(()));
        f.set_body(Body::Read(Bytes::from_static(
            br#"{"a": {"b": 2}, "c": ["x"]}"#,
        )));
        assert!(c
            .check_body(&f)
            .unwrap_err()
            .0
            .starts_with("body does not match json_subset"));
        f.set_body(Body::TooLarge);
        assert!(c.check_body(&f).is_err());
    }
}
