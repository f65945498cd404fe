//! The endpoint schema, shared by `[[endpoints]]` in TOML files and by the
//! attributes of the admin API's JSON documents: one decoder, one set of
//! rules (echo-api-spec section 4 and section 7), errors at their place.

use std::collections::HashSet;
use std::fmt;

use super::conditions::{one_line, MatchSpec};
use super::doc::{Diags, Loc, Node};

/// The request methods a mock can answer (spec A5, A6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Trace,
    /// Every method, extension methods included (an extension of the contract).
    Any,
}

impl Verb {
    pub const ALL: [Verb; 8] = [
        Verb::Get,
        Verb::Head,
        Verb::Post,
        Verb::Put,
        Verb::Patch,
        Verb::Delete,
        Verb::Options,
        Verb::Trace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Head => "HEAD",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
            Verb::Options => "OPTIONS",
            Verb::Trace => "TRACE",
            Verb::Any => "ANY",
        }
    }

    /// Exact, case-sensitive parse: `get` is not a verb.
    pub fn parse(s: &str) -> Option<Verb> {
        if s == "ANY" {
            return Some(Verb::Any);
        }
        Verb::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The verb of a request method; extension methods have none (only
    /// `ANY` endpoints answer them).
    pub fn from_method(m: &http::Method) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == m.as_str())
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an endpoint's path is matched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSpec {
    /// Byte-for-byte equality with the request path (A18).
    Exact(String),
    /// `{name}` and a trailing `{*name}`, matched by the router's tree.
    Template(String),
    /// A regular expression that must match the whole request path.
    Regex(String),
}

impl PathSpec {
    pub fn as_str(&self) -> &str {
        match self {
            PathSpec::Exact(p) | PathSpec::Template(p) | PathSpec::Regex(p) => p,
        }
    }

    /// The key under which two endpoints of one verb answer the same requests:
    /// templates that differ only in parameter names share it.
    pub fn route_key(&self) -> RouteKey {
        match self {
            PathSpec::Exact(p) => RouteKey::Exact(p.clone()),
            PathSpec::Template(p) => RouteKey::Template(normalize_template(p)),
            PathSpec::Regex(p) => RouteKey::Regex(p.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteKey {
    Exact(String),
    Template(String),
    Regex(String),
}

/// The canned answer of an endpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResponseSpec {
    pub code: u16,
    /// Names as spelled by the author, in the author's order.
    pub headers: Vec<(String, String)>,
    /// The body: as written, or read from `body_file`.
    pub body: String,
    /// The file the body was read from (config files only), as written.
    pub body_file: Option<String>,
    /// A template that renders the body from the request (minijinja).
    pub template: Option<String>,
    /// The file the template was read from (config files only), as written.
    pub template_file: Option<String>,
    /// Wait before answering.
    pub delay: Option<Delay>,
    /// Misbehave instead of answering properly.
    pub fault: Option<Fault>,
    /// Answer 429 beyond this many requests per window.
    pub rate_limit: Option<RateLimit>,
    /// Name of an upstream to pass the request to instead of answering.
    pub proxy: Option<String>,
}

/// `response.rate_limit`: at most `requests` answers per `per_secs` seconds
/// (per gateway process); the rest get 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per_secs: u32,
}

/// A fixed delay (`min == max`) or one drawn uniformly from `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delay {
    pub min_ms: u64,
    pub max_ms: u64,
}

/// Ways an endpoint can fail on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Reset the connection (TCP RST) without answering.
    Reset,
    /// Close the connection without sending anything.
    Empty,
    /// Send the header and this many bytes of the body, then close.
    CloseAfterBytes(u64),
}

/// One mock endpoint, as the author wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSpec {
    pub verb: Verb,
    pub path: PathSpec,
    pub priority: Option<i64>,
    /// Conditions on the request beyond verb and path (`match`).
    pub conditions: Option<MatchSpec>,
    pub response: ResponseSpec,
}

impl EndpointSpec {
    pub fn priority(&self) -> i64 {
        self.priority.unwrap_or(0)
    }

    /// Two endpoints with the same key answer the same requests: the verb,
    /// the route, and the conditions. Stores refuse a second one (409).
    pub fn conflict_key(&self) -> String {
        let (kind, route) = match self.path.route_key() {
            RouteKey::Exact(p) => ("exact", p),
            RouteKey::Template(p) => ("template", p),
            RouteKey::Regex(p) => ("regex", p),
        };
        match &self.conditions {
            Some(m) if !m.is_empty() => format!("{} {kind} {route} {}", self.verb, m.canonical()),
            _ => format!("{} {kind} {route}", self.verb),
        }
    }

    /// The JSON:API `attributes` of this endpoint (spec 1.1, A25).
    pub fn attributes_json(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::{json, Map, Value};
        let mut attrs = Map::new();
        attrs.insert("verb".into(), json!(self.verb.as_str()));
        match &self.path {
            PathSpec::Exact(p) | PathSpec::Template(p) => {
                attrs.insert("path".into(), json!(p));
            }
            PathSpec::Regex(r) => {
                attrs.insert("path_regex".into(), json!(r));
            }
        }
        if let Some(p) = self.priority {
            attrs.insert("priority".into(), json!(p));
        }
        if let Some(m) = &self.conditions {
            attrs.insert("match".into(), m.to_json());
        }
        let mut headers = Map::new();
        for (k, v) in &self.response.headers {
            headers.insert(k.clone(), Value::String(v.clone()));
        }
        let mut response = Map::new();
        response.insert("code".into(), json!(self.response.code));
        response.insert("headers".into(), Value::Object(headers));
        let r = &self.response;
        match (&r.template, &r.template_file, &r.body_file) {
            (_, Some(f), _) => {
                response.insert("template_file".into(), json!(f));
            }
            (Some(t), None, _) => {
                response.insert("template".into(), json!(t));
            }
            (None, None, Some(f)) => {
                response.insert("body_file".into(), json!(f));
            }
            (None, None, None) => {
                response.insert("body".into(), json!(r.body));
            }
        }
        if let Some(d) = r.delay {
            let v = if d.min_ms == d.max_ms {
                json!(d.min_ms)
            } else {
                json!({"min": d.min_ms, "max": d.max_ms})
            };
            response.insert("delay_ms".into(), v);
        }
        if let Some(f) = r.fault {
            let v = match f {
                Fault::Reset => json!("reset"),
                Fault::Empty => json!("empty"),
                Fault::CloseAfterBytes(n) => json!({ "close_after_bytes": n }),
            };
            response.insert("fault".into(), v);
        }
        if let Some(l) = r.rate_limit {
            response.insert(
                "rate_limit".into(),
                json!({"requests": l.requests, "per_secs": l.per_secs}),
            );
        }
        if let Some(p) = &r.proxy {
            response.insert("proxy".into(), json!(p));
        }
        attrs.insert("response".into(), Value::Object(response));
        attrs
    }
}

/// What the rules depend on beyond the document itself.
pub struct SchemaContext<'a> {
    /// `/endpoints` belongs to the admin API on this listener (A14).
    pub reserve_admin_path: bool,
    /// Upstreams named in the config files; `response.proxy` may name only these.
    pub upstreams: &'a HashSet<String>,
    /// Where `body_file` and `template_file` are read from; `None` for the
    /// admin API, which may not read files.
    pub files: Option<&'a FileContext>,
}

/// The directories of a config file, for the files its endpoints name.
#[derive(Debug, Clone)]
pub struct FileContext {
    /// The config file's own directory: relative names start here.
    pub dir: std::path::PathBuf,
    /// The config directory (canonical): no file outside it can be read.
    pub root: std::path::PathBuf,
}

/// The largest `body_file` or `template_file`.
pub const MAX_BODY_FILE: u64 = 16 * 1024 * 1024;

pub const ENDPOINT_KEYS: &[&str] = &[
    "verb",
    "path",
    "path_regex",
    "priority",
    "match",
    "response",
];
const RESPONSE_KEYS: &[&str] = &[
    "code",
    "headers",
    "body",
    "body_file",
    "template",
    "template_file",
    "delay_ms",
    "fault",
    "rate_limit",
    "proxy",
];
const VERB_LIST: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE or ANY";
const PATH_REQUIRED_HINT: &str = "give `path` (exact or template) or `path_regex`";
pub const MAX_PATH_LEN: usize = 2048;

/// The attributes present in a document; for a PATCH the absent ones keep
/// their stored values (A8).
#[derive(Debug, Default)]
pub struct PartialSpec {
    pub verb: Option<Verb>,
    pub path: Option<PathSpec>,
    /// `Some(None)`: explicitly set to null.
    pub priority: Option<Option<i64>>,
    /// `Some(None)`: explicitly set to null (no conditions).
    pub conditions: Option<Option<MatchSpec>>,
    pub response: Option<ResponseSpec>,
    /// Where each attribute was, for errors found when combining them.
    pub path_loc: Option<Loc>,
}

/// Decodes the attributes in `attrs`. Every error goes to `diags`; the result
/// holds what could be read. `extra_keys` are keys the caller handles itself.
pub fn decode_partial(
    attrs: &Node,
    ctx: &SchemaContext<'_>,
    diags: &mut Diags,
    extra_keys: &[&str],
) -> PartialSpec {
    let mut out = PartialSpec::default();
    if diags.strict {
        let known: Vec<&str> = ENDPOINT_KEYS.iter().chain(extra_keys).copied().collect();
        diags.unknown_keys(attrs, "an endpoint", &known);
    }
    let present = |name: &str| attrs.get(name).filter(|n| !n.is_null());

    if let Some(n) = attrs.get("verb") {
        out.verb = decode_verb(n, diags);
    }
    match (present("path"), present("path_regex")) {
        (Some(p), Some(r)) => {
            diags.push_hint(
                &r.loc,
                "path_regex cannot be given together with path",
                "keep one of them",
            );
            let _ = p;
        }
        (Some(p), None) => {
            out.path_loc = Some(p.loc.clone());
            out.path = decode_path(p, ctx, diags);
        }
        (None, Some(r)) => {
            out.path_loc = Some(r.loc.clone());
            out.path = decode_regex(r, diags);
        }
        // Present but null: a path cannot be removed.
        (None, None) => {
            if let Some(n) = attrs.get("path").or_else(|| attrs.get("path_regex")) {
                diags.push_hint(&n.loc, "path is required", PATH_REQUIRED_HINT);
            }
        }
    }
    if let Some(n) = attrs.get("priority") {
        out.priority = if n.is_null() {
            Some(None)
        } else {
            diags
                .int_in::<i64>(n, "priority", i128::from(i32::MIN), i128::from(i32::MAX))
                .map(Some)
        };
    }
    if let Some(n) = attrs.get("match") {
        out.conditions = if n.is_null() {
            Some(None)
        } else {
            super::conditions::decode(n, diags).map(|m| (!m.is_empty()).then_some(m))
        };
    }
    if let Some(n) = attrs.get("response") {
        out.response = decode_response(n, ctx, diags);
    }
    out
}

/// Decodes a complete endpoint (a create, or an endpoint in a file): verb,
/// a path and a response are required.
pub fn decode_full(
    attrs: &Node,
    ctx: &SchemaContext<'_>,
    diags: &mut Diags,
    extra_keys: &[&str],
) -> Option<EndpointSpec> {
    let before = diags.list.len();
    let p = decode_partial(attrs, ctx, diags, extra_keys);
    // `decode_partial` reported the attributes given as null.
    let absent = |name: &str| attrs.get(name).is_none();
    if absent("verb") {
        diags.push(&attrs.loc.member("verb"), "verb is required");
    }
    if absent("path") && absent("path_regex") {
        diags.push_hint(
            &attrs.loc.member("path"),
            "path is required",
            PATH_REQUIRED_HINT,
        );
    }
    if absent("response") {
        diags.push(&attrs.loc.member("response"), "response is required");
    }
    if diags.list.len() > before {
        return None;
    }
    Some(EndpointSpec {
        verb: p.verb?,
        path: p.path?,
        priority: p.priority.flatten(),
        conditions: p.conditions.flatten(),
        response: p.response?,
    })
}

/// Applies a PATCH to a stored endpoint (A8): present attributes replace.
pub fn apply_partial(base: &EndpointSpec, p: PartialSpec) -> EndpointSpec {
    EndpointSpec {
        verb: p.verb.unwrap_or(base.verb),
        path: p.path.unwrap_or_else(|| base.path.clone()),
        priority: p.priority.unwrap_or(base.priority),
        conditions: p.conditions.unwrap_or_else(|| base.conditions.clone()),
        response: p.response.unwrap_or_else(|| base.response.clone()),
    }
}

fn decode_verb(n: &Node, diags: &mut Diags) -> Option<Verb> {
    if n.is_null() {
        diags.push(&n.loc, "verb is required");
        return None;
    }
    let s = diags.string(n, "verb")?;
    let v = Verb::parse(s);
    if v.is_none() {
        let hint = if Verb::parse(&s.to_ascii_uppercase()).is_some() {
            format!(
                "methods are case-sensitive: write `{}`",
                s.to_ascii_uppercase()
            )
        } else {
            "ANY answers every method, extension methods such as PURGE too; CONNECT cannot be mocked"
                .to_string()
        };
        diags.push_hint(&n.loc, format!("verb must be one of {VERB_LIST}"), hint);
    }
    v
}

fn decode_path(n: &Node, ctx: &SchemaContext<'_>, diags: &mut Diags) -> Option<PathSpec> {
    let s = diags.string(n, "path")?;
    match check_path(s, ctx.reserve_admin_path) {
        Ok(p) => Some(p),
        Err((msg, hint)) => {
            diags.push_hint(&n.loc, msg, hint);
            None
        }
    }
}

fn decode_regex(n: &Node, diags: &mut Diags) -> Option<PathSpec> {
    let s = diags.string(n, "path_regex")?;
    if s.is_empty() {
        diags.push(&n.loc, "path_regex must not be empty");
        return None;
    }
    match compile_path_regex(s) {
        Ok(_) => Some(PathSpec::Regex(s.to_string())),
        Err(e) => {
            diags.push_hint(
                &n.loc,
                format!(
                    "path_regex is not a valid regular expression: {}",
                    one_line(&e)
                ),
                "the syntax is that of the Rust regex crate; it must match the whole path",
            );
            None
        }
    }
}

/// Compiles a `path_regex`, anchored so that it matches the whole path.
pub fn compile_path_regex(s: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{s})$"))
        .size_limit(crate::limits::regex_bytes())
        .build()
}

fn is_pchar_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
}

/// Checks a path against spec 4.2 and section 7 (templates).
pub fn check_path(s: &str, reserve_admin: bool) -> Result<PathSpec, (String, String)> {
    const CHARSET: &str =
        "paths take RFC 3986 path characters (A-Z a-z 0-9 - . _ ~ ! $ & ' ( ) * + , ; = : @ /) and %XX escapes";
    if s.is_empty() {
        return Err((
            "path must not be empty".into(),
            "write `/` for the root".into(),
        ));
    }
    if s.len() > MAX_PATH_LEN {
        return Err((
            format!("path must be at most {MAX_PATH_LEN} bytes, not {}", s.len()),
            "shorten it, or match it with path_regex".into(),
        ));
    }
    if !s.starts_with('/') {
        return Err((
            "path must start with `/`".into(),
            format!("write `/{}`", s.trim_start_matches('/')),
        ));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut template = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let ok = bytes.len() > i + 2
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err((
                    format!("path has a `%` at byte {i} that is not followed by two hex digits"),
                    "percent-encode `%` itself as %25".into(),
                ));
            }
            i += 3;
            continue;
        }
        if b == b'{' || b == b'}' {
            template = true;
            i += 1;
            continue;
        }
        if !is_pchar_byte(b) {
            let shown = s[i..]
                .chars()
                .next()
                .map_or(String::new(), |c| c.escape_default().to_string());
            let what = match b {
                b'?' => {
                    "a query string (`?`) is not part of a path: queries are ignored when matching"
                        .to_string()
                }
                b'#' => "a fragment (`#`) is never sent to a server".to_string(),
                _ => CHARSET.to_string(),
            };
            return Err((
                format!("path has the character `{shown}` at byte {i}, which is not allowed"),
                what,
            ));
        }
        i += 1;
    }
    if reserve_admin && (s == "/endpoints" || s.starts_with("/endpoints/")) {
        return Err((
            format!("path `{s}` is reserved for the admin API on this listener"),
            "choose another path, or move the admin API to a listener of its own ([admin] listen)"
                .into(),
        ));
    }
    if template {
        check_template(s)?;
        return Ok(PathSpec::Template(s.to_string()));
    }
    Ok(PathSpec::Exact(s.to_string()))
}

/// Segments of a template: `{name}` (one per segment, with optional static
/// prefix and suffix), and `{*name}` only as the whole last segment.
fn check_template(s: &str) -> Result<(), (String, String)> {
    const HINT: &str = "templates take `{name}` for one segment and a final `{*name}` for the rest";
    let err = |m: String| Err((m, HINT.to_string()));
    let segments: Vec<&str> = s.split('/').collect();
    let mut names = HashSet::new();
    for (idx, seg) in segments.iter().enumerate() {
        let opens = seg.matches('{').count();
        let closes = seg.matches('}').count();
        if opens == 0 && closes == 0 {
            continue;
        }
        if opens != 1 || closes != 1 {
            return err(format!(
                "path segment `{seg}` must hold exactly one `{{name}}` parameter"
            ));
        }
        let (Some(o), Some(c)) = (seg.find('{'), seg.find('}')) else {
            return err(format!("path segment `{seg}` is not a valid template"));
        };
        if c < o {
            return err(format!(
                "path segment `{seg}` closes `}}` before it opens `{{`"
            ));
        }
        let inner = &seg[o + 1..c];
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(n) => (true, n),
            None => (false, inner),
        };
        let valid_name = !name.is_empty()
            && name.bytes().enumerate().all(|(k, b)| {
                b == b'_' || b.is_ascii_alphabetic() || (k > 0 && b.is_ascii_digit())
            });
        if !valid_name {
            return err(format!(
                "parameter `{{{inner}}}` needs a name of letters, digits and `_`"
            ));
        }
        if catch_all && (idx != segments.len() - 1 || o != 0 || c != seg.len() - 1) {
            return err(format!(
                "catch-all `{{{inner}}}` must be the whole last segment of the path"
            ));
        }
        if !names.insert(name.to_string()) {
            return err(format!("parameter name `{name}` is used twice"));
        }
    }
    Ok(())
}

/// The parameter names of a template, in path order (`*` left off).
pub fn template_params(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(o) = rest.find('{') {
        let Some(c) = rest[o..].find('}') else { break };
        out.push(rest[o + 1..o + c].trim_start_matches('*').to_string());
        rest = &rest[o + c + 1..];
    }
    out
}

/// `/users/{id}/x{n}.png` → `/users/{p0}/x{p1}.png`: the shape of a template.
pub fn normalize_template(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut n = 0;
    let mut rest = s;
    while let Some(o) = rest.find('{') {
        out.push_str(&rest[..o]);
        let Some(c) = rest[o..].find('}') else { break };
        let inner = &rest[o + 1..o + c];
        if inner.starts_with('*') {
            out.push_str(&format!("{{*p{n}}}"));
        } else {
            out.push_str(&format!("{{p{n}}}"));
        }
        n += 1;
        rest = &rest[o + c + 1..];
    }
    out.push_str(rest);
    out
}

fn decode_response(n: &Node, ctx: &SchemaContext<'_>, diags: &mut Diags) -> Option<ResponseSpec> {
    if n.is_null() {
        diags.push(&n.loc, "response is required");
        return None;
    }
    let t = diags.table(n, "response")?;
    diags.unknown_keys(t, "response", RESPONSE_KEYS);
    let before = diags.list.len();

    let code = match t.get("code") {
        None => {
            diags.push(&t.loc.member("code"), "response.code is required");
            None
        }
        Some(c) if c.is_null() => {
            diags.push(&c.loc, "response.code is required");
            None
        }
        Some(c) => diags.int_in::<u16>(c, "response.code", 200, 599),
    };

    let mut headers = Vec::new();
    if let Some(h) = t.get("headers").filter(|h| !h.is_null()) {
        if let Some(h) = diags.table(h, "response.headers") {
            headers = decode_headers(h, diags);
        }
    }

    let sources: Vec<&str> = ["body", "body_file", "template", "template_file"]
        .into_iter()
        .filter(|k| t.get(k).is_some_and(|v| !v.is_null()))
        .collect();
    if sources.len() > 1 {
        let loc = t.get(sources[1]).map_or(t.loc.clone(), |x| x.loc.clone());
        diags.push_hint(
            &loc,
            format!(
                "response.{} cannot be given together with response.{}",
                sources[1], sources[0]
            ),
            "a response has one of body, body_file, template, template_file",
        );
    }
    let mut body = String::new();
    let (mut body_file, mut template, mut template_file) = (None, None, None);
    match sources.first().copied() {
        Some("body") => {
            if let Some(b) = t.get("body") {
                match b.as_str() {
                    Some(s) => body = s.to_string(),
                    None => diags.push_hint(
                        &b.loc,
                        format!("response.body must be a string, not {}", b.type_name()),
                        "to send JSON, put the JSON text in a string; it is sent verbatim",
                    ),
                }
            }
        }
        Some("body_file") => {
            if let Some((name, text)) =
                read_named_file(t.get("body_file"), "response.body_file", ctx, diags)
            {
                body = text;
                body_file = Some(name);
            }
        }
        Some("template") => {
            if let Some(src) = t
                .get("template")
                .and_then(|x| diags.string(x, "response.template"))
            {
                if check_template_source(src, t.get("template"), "response.template", diags) {
                    template = Some(src.to_string());
                }
            }
        }
        Some("template_file") => {
            if let Some((name, src)) =
                read_named_file(t.get("template_file"), "response.template_file", ctx, diags)
            {
                if check_template_source(
                    &src,
                    t.get("template_file"),
                    "response.template_file",
                    diags,
                ) {
                    template = Some(src);
                    template_file = Some(name);
                }
            }
        }
        _ => {}
    }
    if let Some(c) = code {
        let has_body = !body.is_empty() || template.is_some();
        if (c == 204 || c == 304) && has_body {
            let key = sources.first().copied().unwrap_or("body");
            let loc = t.get(key).map_or(t.loc.member("body"), |b| b.loc.clone());
            diags.push(
                &loc,
                format!("response.{key} must be empty when response.code is {c}"),
            );
        }
    }

    let delay = t
        .get("delay_ms")
        .filter(|x| !x.is_null())
        .and_then(|x| decode_delay(x, diags));
    let fault = t
        .get("fault")
        .filter(|x| !x.is_null())
        .and_then(|x| decode_fault(x, diags));
    let rate_limit = t
        .get("rate_limit")
        .filter(|x| !x.is_null())
        .and_then(|x| decode_rate_limit(x, diags));

    let mut proxy = None;
    if let Some(p) = t.get("proxy").filter(|p| !p.is_null()) {
        if let Some(name) = diags.string(p, "response.proxy") {
            if ctx.upstreams.contains(name) {
                proxy = Some(name.to_string());
            } else {
                let mut known: Vec<&str> = ctx.upstreams.iter().map(String::as_str).collect();
                known.sort_unstable();
                let hint = if known.is_empty() {
                    "no upstreams are configured: add an [upstreams.NAME] section to a config file"
                        .to_string()
                } else {
                    format!("configured upstreams: {}", known.join(", "))
                };
                diags.push_hint(
                    &p.loc,
                    format!("response.proxy names an unknown upstream `{name}`"),
                    hint,
                );
            }
        }
        // The upstream answers: what shapes the mock's own answer would be ignored.
        for key in [
            "template",
            "template_file",
            "body_file",
            "delay_ms",
            "fault",
            "rate_limit",
        ] {
            if let Some(x) = t.get(key).filter(|x| !x.is_null()) {
                diags.push_hint(
                    &x.loc,
                    format!("response.{key} cannot be given together with response.proxy"),
                    "a proxied request is answered by the upstream: remove one of them",
                );
            }
        }
    }

    if diags.list.len() > before {
        return None;
    }
    Some(ResponseSpec {
        code: code?,
        headers,
        body,
        body_file,
        template,
        template_file,
        delay,
        fault,
        rate_limit,
        proxy,
    })
}

fn decode_rate_limit(n: &Node, diags: &mut Diags) -> Option<RateLimit> {
    const HINT: &str =
        "write { requests = N, per_secs = S }, for example { requests = 10, per_secs = 1 }";
    if n.entries().is_none() {
        diags.push_hint(
            &n.loc,
            format!("response.rate_limit must be a table, not {}", n.type_name()),
            HINT,
        );
        return None;
    }
    diags.unknown_keys(n, "response.rate_limit", &["requests", "per_secs"]);
    let requests = match n.get("requests") {
        Some(x) => diags.int_in::<u32>(x, "response.rate_limit.requests", 0, 1_000_000),
        None => {
            diags.push_hint(&n.loc, "response.rate_limit needs requests", HINT);
            None
        }
    };
    let per_secs = match n.get("per_secs") {
        Some(x) => diags.int_in::<u32>(x, "response.rate_limit.per_secs", 1, 3600),
        None => Some(1),
    };
    Some(RateLimit {
        requests: requests?,
        per_secs: per_secs?,
    })
}

/// The longest delay an endpoint may ask for.
pub const MAX_DELAY_MS: u64 = 600_000;

fn decode_delay(n: &Node, diags: &mut Diags) -> Option<Delay> {
    if n.entries().is_none() {
        let ms = diags.int_in::<u64>(n, "response.delay_ms", 0, i128::from(MAX_DELAY_MS))?;
        return Some(Delay {
            min_ms: ms,
            max_ms: ms,
        });
    }
    diags.unknown_keys(n, "response.delay_ms", &["min", "max"]);
    let bound = |diags: &mut Diags, key: &str| match n.get(key) {
        Some(x) => diags.int_in::<u64>(
            x,
            &format!("response.delay_ms.{key}"),
            0,
            i128::from(MAX_DELAY_MS),
        ),
        None => {
            diags.push_hint(
                &n.loc.member(key),
                format!("response.delay_ms.{key} is required"),
                "a random delay is { min = 50, max = 200 }; a fixed one a plain number",
            );
            None
        }
    };
    let (min, max) = (bound(diags, "min"), bound(diags, "max"));
    let (min_ms, max_ms) = (min?, max?);
    if min_ms > max_ms {
        diags.push(
            &n.loc,
            format!("response.delay_ms.min ({min_ms}) is more than max ({max_ms})"),
        );
        return None;
    }
    Some(Delay { min_ms, max_ms })
}

fn decode_fault(n: &Node, diags: &mut Diags) -> Option<Fault> {
    const HINT: &str = "write \"reset\", \"empty\" or { close_after_bytes = N }";
    if let Some(s) = n.as_str() {
        return match s {
            "reset" => Some(Fault::Reset),
            "empty" => Some(Fault::Empty),
            other => {
                diags.push_hint(
                    &n.loc,
                    format!("response.fault `{other}` is not a fault"),
                    HINT,
                );
                None
            }
        };
    }
    if n.entries().is_none() {
        diags.push_hint(
            &n.loc,
            format!(
                "response.fault must be a string or a table, not {}",
                n.type_name()
            ),
            HINT,
        );
        return None;
    }
    diags.unknown_keys(n, "response.fault", &["close_after_bytes"]);
    match n.get("close_after_bytes") {
        Some(x) => diags
            .int_in::<u64>(
                x,
                "response.fault.close_after_bytes",
                0,
                i128::from(u32::MAX),
            )
            .map(Fault::CloseAfterBytes),
        None => {
            diags.push_hint(&n.loc, "response.fault needs close_after_bytes", HINT);
            None
        }
    }
}

/// Reads a file named relative to its config file, refusing any path that
/// leaves the config directory. Returns (the name as written, the text).
fn read_named_file(
    n: Option<&Node>,
    what: &str,
    ctx: &SchemaContext<'_>,
    diags: &mut Diags,
) -> Option<(String, String)> {
    let n = n?;
    let name = diags.string(n, what)?;
    let Some(files) = ctx.files else {
        diags.push_hint(
            &n.loc,
            format!("{what} can be used in config files only"),
            "send the content itself (body or template)",
        );
        return None;
    };
    let fail = |diags: &mut Diags, msg: String| {
        diags.push_hint(
            &n.loc,
            msg,
            "name a file inside the config directory, relative to this config file",
        );
        None
    };
    let path = files.dir.join(name);
    let real = match std::fs::canonicalize(&path) {
        Ok(p) => p,
        Err(e) => return fail(diags, format!("{what} `{name}` cannot be read: {e}")),
    };
    if !real.starts_with(&files.root) {
        return fail(
            diags,
            format!("{what} `{name}` is outside the config directory"),
        );
    }
    match std::fs::metadata(&real) {
        Ok(m) if m.len() > MAX_BODY_FILE => {
            return fail(
                diags,
                format!("{what} `{name}` is larger than {MAX_BODY_FILE} bytes"),
            )
        }
        Ok(m) if !m.is_file() => return fail(diags, format!("{what} `{name}` is not a file")),
        Ok(_) => {}
        Err(e) => return fail(diags, format!("{what} `{name}` cannot be read: {e}")),
    }
    match std::fs::read(&real) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some((name.to_string(), text)),
            Err(_) => fail(diags, format!("{what} `{name}` is not UTF-8 text")),
        },
        Err(e) => fail(diags, format!("{what} `{name}` cannot be read: {e}")),
    }
}

/// Whether a template compiles; its error (with the template's line) otherwise.
fn check_template_source(src: &str, n: Option<&Node>, what: &str, diags: &mut Diags) -> bool {
    match crate::template::check(src) {
        Ok(()) => true,
        Err(e) => {
            let loc = n.map_or(Loc::Pointer(String::new()), |x| x.loc.clone());
            diags.push_hint(
                &loc,
                format!("{what} does not compile: {e}"),
                "the syntax is minijinja's (Jinja2)",
            );
            false
        }
    }
}

const SERVER_OWNED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn decode_headers(h: &Node, diags: &mut Diags) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in h.entries().unwrap_or(&[]) {
        let name = &k.name;
        let mut ok = true;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            diags.push_hint(
                &k.loc,
                format!(
                    "header name `{}` is not a valid HTTP token",
                    name.escape_default()
                ),
                "names take letters, digits and !#$%&'*+-.^_`|~ (no spaces, no `:`)",
            );
            ok = false;
        } else if SERVER_OWNED.contains(&name.to_ascii_lowercase().as_str()) {
            diags.push_hint(
                &k.loc,
                format!("header `{name}` is set by the server and cannot be configured"),
                "Content-Length, Transfer-Encoding and the connection headers are derived from the response",
            );
            ok = false;
        } else if seen.contains(&name.to_ascii_lowercase()) {
            diags.push(
                &k.loc,
                format!("header `{name}` is given twice (names are case-insensitive)"),
            );
            ok = false;
        }
        seen.push(name.to_ascii_lowercase());
        match v.as_str() {
            Some(val) => {
                if let Some(bad) = val
                    .bytes()
                    .position(|b| !(b == b'\t' || (0x20..=0x7e).contains(&b)))
                {
                    diags.push_hint(
                        &v.loc,
                        format!("header `{name}` has a character at byte {bad} that is not allowed in a header value"),
                        "values take printable ASCII and tabs; no CR or LF",
                    );
                    ok = false;
                }
                if ok {
                    out.push((name.clone(), val.to_string()));
                }
            }
            None => diags.push(
                &v.loc,
                format!(
                    "header `{name}` must have a string value, not {}",
                    v.type_name()
                ),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> PathSpec {
        check_path(s, true).unwrap()
    }
    fn bad(s: &str) -> String {
        check_path(s, true).unwrap_err().0
    }

    #[test]
    fn paths() {
        assert_eq!(ok("/"), PathSpec::Exact("/".into()));
        assert_eq!(
            ok("/a%20b/~x:@!$&'()*+,;="),
            PathSpec::Exact("/a%20b/~x:@!$&'()*+,;=".into())
        );
        assert!(bad("").contains("empty"));
        assert!(bad("a").contains("start with"));
        assert!(bad("/a b").contains("` `"));
        assert!(bad("/a?b").contains("`?`"));
        assert!(bad("/a#b").contains("`#`"));
        assert!(bad("/%zz").contains("hex"));
        assert!(bad("/é").contains("not allowed"));
        assert!(bad("/endpoints").contains("reserved"));
        assert!(bad("/endpoints/1").contains("reserved"));
        assert_eq!(
            check_path("/endpoints", false).unwrap(),
            PathSpec::Exact("/endpoints".into())
        );
        assert!(matches!(ok("/endpointsx"), PathSpec::Exact(_)));
        assert!(bad(&format!("/{}", "a".repeat(2048))).contains("2048"));
        assert!(matches!(
            ok(&format!("/{}", "a".repeat(2047))),
            PathSpec::Exact(_)
        ));
    }

    #[test]
    fn templates() {
        assert!(matches!(ok("/u/{id}"), PathSpec::Template(_)));
        assert!(matches!(ok("/u/{id}/f/{*rest}"), PathSpec::Template(_)));
        assert!(matches!(ok("/img/x{id}.png"), PathSpec::Template(_)));
        assert!(bad("/a{b").contains("exactly one"));
        assert!(bad("/a/{}").contains("name"));
        assert!(bad("/{*a}/{*b}").contains("catch-all"));
        assert!(bad("/{*a}/x").contains("catch-all"));
        assert!(bad("/{a}/{a}").contains("twice"));
        assert!(bad("/{a}{b}").contains("exactly one"));
        assert_eq!(
            normalize_template("/u/{id}/x{n}.png/{*r}"),
            "/u/{p0}/x{p1}.png/{*p2}"
        );
    }
}
