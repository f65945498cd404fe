//! Response templates: minijinja (Jinja2 syntax), sandboxed (no file or
//! system access, bounded work), compiled when the router is compiled.
//!
//! A template sees `request` (method, path, params, query, headers with
//! lower-case names, cookies, body as text, json when the body is JSON) and
//! the functions `now()`, `now("%Y-%m-%d")`, `uuid()` and
//! `random_int(min, max)`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::{AutoEscape, Environment, Error, ErrorKind, Value};
use serde::Serialize;

/// Work a single render may do (minijinja fuel): loops cannot run away.
pub const FUEL: u64 = 200_000;

/// What a template can read of the request.
#[derive(Debug, Default, Serialize)]
pub struct RequestView {
    pub method: String,
    pub path: String,
    pub params: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub cookies: BTreeMap<String, String>,
    pub body: String,
    pub json: Option<serde_json::Value>,
}

/// A compiled body template.
pub struct BodyTemplate {
    env: Environment<'static>,
    reads_body: bool,
}

impl std::fmt::Debug for BodyTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyTemplate")
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.set_fuel(Some(FUEL));
    env.add_function("now", now);
    env.add_function("uuid", || uuid::Uuid::new_v4().to_string());
    env.add_function("random_int", random_int);
    env
}

fn now(format: Option<String>) -> Result<String, Error> {
    let t = chrono::Utc::now();
    match format {
        None => Ok(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        Some(f) => {
            let mut out = String::new();
            write!(out, "{}", t.format(&f)).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("now(): `{f}` is not a valid date format"),
                )
            })?;
            Ok(out)
        }
    }
}

fn random_int(min: i64, max: i64) -> Result<i64, Error> {
    if min > max {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("random_int({min}, {max}): min is more than max"),
        ));
    }
    Ok(fastrand::i64(min..=max))
}

/// Checks that a template compiles.
pub fn check(source: &str) -> Result<(), String> {
    BodyTemplate::new(source).map(|_| ())
}

impl BodyTemplate {
    pub fn new(source: &str) -> Result<BodyTemplate, String> {
        let mut env = environment();
        env.add_template_owned("body", source.to_string())
            .map_err(|e| describe(&e))?;
        let t = env.get_template("body").map_err(|e| describe(&e))?;
        let reads_body = t.undeclared_variables(true).iter().any(|v| uses_body(v));
        Ok(BodyTemplate { env, reads_body })
    }

    /// Whether the template may look at `request.body` or `request.json`:
    /// then the request body must be read before it renders.
    pub fn reads_body(&self) -> bool {
        self.reads_body
    }

    /// Renders the body for a request. Output stops at
    /// `server.max_template_output_bytes`: a larger body is an error, and
    /// is never held in memory whole.
    pub fn render(&self, request: &RequestView) -> Result<String, String> {
        let t = self.env.get_template("body").map_err(|e| describe(&e))?;
        let limit = crate::limits::template_output();
        let mut out = Capped {
            buf: Vec::new(),
            limit,
            over: false,
        };
        let ctx = minijinja::context! { request => Value::from_serialize(request) };
        if let Err(e) = t.render_captured_to(ctx, &mut out).map(drop) {
            if out.over {
                return Err(format!(
                    "the rendered body is larger than {limit} bytes (server.max_template_output_bytes)"
                ));
            }
            return Err(describe(&e));
        }
        String::from_utf8(out.buf).map_err(|_| "the rendered body is not UTF-8".to_string())
    }
}

/// A buffer that refuses to grow past `limit` bytes.
struct Capped {
    buf: Vec<u8>,
    limit: usize,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.over = true;
            return Err(std::io::Error::other("rendered body too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether a variable the template looks up (`request.json.id`) is the body,
/// or the whole request (used in a way the analysis cannot follow).
fn uses_body(var: &str) -> bool {
    var == "request"
        || ["request.body", "request.json"].iter().any(|field| {
            var.strip_prefix(field)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
}

/// One line: what went wrong and on which line of the template.
fn describe(e: &Error) -> String {
    let mut s = e.kind().to_string();
    if let Some(d) = e.detail() {
        s.push_str(": ");
        s.push_str(d);
    }
    if let Some(line) = e.line() {
        let _ = write!(s, " (template line {line})");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_request() {
        let t = BodyTemplate::new(
            r#"{"id": "{{ request.params.id }}", "q": "{{ request.query.q }}", "h": "{{ request.headers["x-t"] }}", "n": {{ request.json.n + 1 }}}"#,
        )
        .unwrap();
        let mut r = RequestView::default();
        r.params.insert("id".into(), "7".into());
        r.query.insert("q".into(), "x".into());
        r.headers.insert("x-t".into(), "h".into());
        r.json = Some(serde_json::json!({"n": 41}));
        assert_eq!(
            t.render(&r).unwrap(),
            r#"{"id": "7", "q": "x", "h": "h", "n": 42}"#
        );
    }

    #[test]
    fn helpers_and_limits() {
        let t = BodyTemplate::new(
            "{{ uuid() | length }} {{ random_int(3, 3) }} {{ now('%Y') | length }}",
        )
        .unwrap();
        assert_eq!(t.render(&RequestView::default()).unwrap(), "36 3 4");
        let looping = BodyTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap();
        assert!(
            looping.render(&RequestView::default()).is_err(),
            "fuel stops runaway loops"
        );
        let err = BodyTemplate::new("line1\n{{ unclosed").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn knows_whether_it_reads_the_body() {
        let reads = |src: &str| BodyTemplate::new(src).unwrap().reads_body();
        assert!(!reads(
            "{{ request.params.id }} {{ request.headers['x-a'] }} {{ now() }}"
        ));
        assert!(!reads(
            "{% set body = 1 %}{{ body }} {{ request.bodyguard }}"
        ));
        assert!(reads("{{ request.json.id }}"));
        assert!(reads("{{ request.body | length }}"));
        assert!(reads("{% if x %}{{ request.json }}{% endif %}"));
        assert!(reads("{{ request['json'] }}"), "a lookup it cannot follow");
        assert!(reads("{% set r = request %}{{ r.path }}"));
    }
}
