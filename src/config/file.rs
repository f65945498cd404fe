//! Reading TOML config files: a file or a directory of `*.toml` files, every
//! error collected and reported as `file:line:col: message (hint: ...)`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::doc::{Diag, Diags, Loc, Node};
use super::endpoint::{decode_full, FileContext, SchemaContext};
use super::{Config, FileEndpoint, Overrides, StoreConfig, Upstream};

/// One error in a config file, placed at its line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// Every error found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

struct Source {
    name: String,
    text: String,
    /// The byte offset at which each line starts, the first line's (0) first.
    line_starts: Vec<usize>,
    /// Where the files its endpoints name are read from.
    files: FileContext,
}

impl Source {
    fn new(name: String, text: String, files: FileContext) -> Source {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            name,
            text,
            line_starts,
            files,
        }
    }

    /// Line and column (in characters), from 1, of a byte offset: a binary
    /// search of the line starts, so that a file of 100k endpoints, each
    /// with a position, loads in linear time.
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self
            .line_starts
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        let col = self
            .text
            .get(line_start..offset)
            .map_or(1, |l| l.chars().count() + 1);
        (line.max(1), col)
    }

    fn error(&self, d: &Diag) -> ConfigError {
        let (line, col) = match &d.loc {
            Loc::Span(r) => self.position(r.start),
            Loc::Pointer(_) => (1, 1),
        };
        ConfigError {
            file: self.name.clone(),
            line,
            col,
            message: d.message.clone(),
            hint: d.hint.clone(),
        }
    }

    fn at(&self, loc: &Loc) -> String {
        let (l, c) = match loc {
            Loc::Span(r) => self.position(r.start),
            Loc::Pointer(_) => (1, 1),
        };
        format!("{}:{l}:{c}", self.name)
    }
}

const TOP_KEYS: &[&str] = &[
    "server",
    "admin",
    "store",
    "metrics",
    "journal",
    "upstreams",
    "fallback",
    "endpoints",
];
const JOURNAL_KEYS: &[&str] = &["enabled", "capacity", "max_body_bytes", "explain_404"];
const METRICS_KEYS: &[&str] = &["emf", "service_name", "emf_interval_secs"];
const STORE_KEYS: &[&str] = &["kind", "path", "url", "prefix", "check_interval_ms"];
const SERVER_KEYS: &[&str] = &[
    "listen",
    "threads",
    "keepalive_timeout_secs",
    "header_timeout_secs",
    "shutdown_grace_secs",
    "public_url",
    "h2c",
    "watch_config",
    "match_body_limit",
    "max_request_line_bytes",
    "max_header_bytes",
    "max_headers",
    "max_connections",
    "body_timeout_secs",
    "max_endpoints",
    "max_template_output_bytes",
    "max_regex_bytes",
];
const ADMIN_KEYS: &[&str] = &[
    "enabled",
    "listen",
    "token",
    "token_env",
    "max_body_bytes",
    "rate_per_client",
    "rate_per_token",
    "tls_cert",
    "tls_key",
];
const UPSTREAM_KEYS: &[&str] = &[
    "url",
    "connect_timeout_ms",
    "read_timeout_ms",
    "preserve_host",
    "verify_tls",
];
const FALLBACK_KEYS: &[&str] = &["upstream"];

/// The `*.toml` files a path names: the file itself, or a directory's files in
/// name order.
pub fn config_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let whole = |message: String, hint: &str| ConfigError {
        file: path.display().to_string(),
        line: 1,
        col: 1,
        message,
        hint: Some(hint.to_string()),
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        whole(
            format!("cannot read the config path: {e}"),
            "give a TOML file or a directory of *.toml files",
        )
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| {
        whole(
            format!("cannot list the config directory: {e}"),
            "check its permissions",
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(whole(
            "the config directory has no *.toml files".into(),
            "add a file, or start without --config for the built-in defaults",
        ));
    }
    Ok(files)
}

/// Loads and checks a configuration from the given files or directories.
/// Every error of every file is returned at once.
pub fn load(paths: &[PathBuf]) -> Result<Config, ConfigErrors> {
    load_with(paths, &Overrides::default())
}

/// Loads a configuration with command-line settings applied on top (before
/// the endpoints are checked: whether `/endpoints` is reserved depends on
/// where the admin API listens).
pub fn load_with(paths: &[PathBuf], overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut sources = Vec::new();
    for p in paths {
        match config_files(p) {
            Ok(files) => {
                // Files named by endpoints must stay inside the directory given
                // (or the directory of the file given).
                let root_dir = if p.is_dir() {
                    p.as_path()
                } else {
                    p.parent().unwrap_or(Path::new("."))
                };
                let root_dir = if root_dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    root_dir
                };
                let root =
                    std::fs::canonicalize(root_dir).unwrap_or_else(|_| root_dir.to_path_buf());
                for f in files {
                    let dir = f
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .and_then(|d| std::fs::canonicalize(d).ok())
                        .unwrap_or_else(|| root.clone());
                    match std::fs::read_to_string(&f) {
                        Ok(text) => sources.push(Source::new(
                            f.display().to_string(),
                            text,
                            FileContext {
                                dir,
                                root: root.clone(),
                            },
                        )),
                        Err(e) => errors.push(ConfigError {
                            file: f.display().to_string(),
                            line: 1,
                            col: 1,
                            message: format!("cannot read the file: {e}"),
                            hint: Some(
                                "check that it exists, is readable and is UTF-8 text".into(),
                            ),
                        }),
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    decode(sources, errors, overrides)
}

/// Loads and checks a configuration from TOML text, as if read from a file
/// called `name` in the directory `dir` (where the files its endpoints name
/// are read from, and which they may not leave).
pub fn load_str(name: &str, text: &str, dir: &Path) -> Result<Config, ConfigErrors> {
    let files = FileContext {
        dir: dir.to_path_buf(),
        root: dir.to_path_buf(),
    };
    let source = Source::new(name.to_string(), text.to_string(), files);
    decode(vec![source], Vec::new(), &Overrides::default())
}

/// Parses and checks the files read, after the errors met reading them.
fn decode(
    sources: Vec<Source>,
    mut errors: Vec<ConfigError>,
    overrides: &Overrides,
) -> Result<Config, ConfigErrors> {
    let mut cfg = Config {
        files: sources.iter().map(|s| PathBuf::from(&s.name)).collect(),
        digest: digest(&sources),
        ..Config::default()
    };

    // Pass 1: parse every file, decode the sections that endpoints depend on.
    let mut docs: Vec<(usize, Node)> = Vec::new();
    let mut seen_sections: HashMap<&'static str, String> = HashMap::new();
    let mut upstream_at: HashMap<String, String> = HashMap::new();
    for (i, src) in sources.iter().enumerate() {
        let (table, syntax) = toml::de::DeTable::parse_recoverable(&src.text);
        for e in &syntax {
            let (line, col) = src.position(e.span().map_or(0, |r| r.start));
            errors.push(ConfigError {
                file: src.name.clone(),
                line,
                col,
                message: format!("TOML syntax: {}", e.message().trim()),
                hint: Some("see https://toml.io for the syntax".into()),
            });
        }
        let root = Node::from_toml_table(&table);
        let mut d = Diags::strict();
        d.unknown_keys(&root, "a config file", TOP_KEYS);
        for (section, key) in [
            ("server", "server"),
            ("admin", "admin"),
            ("store", "store"),
            ("metrics", "metrics"),
            ("journal", "journal"),
            ("fallback", "fallback"),
        ] {
            if let Some(n) = root.get(key) {
                let here = src.at(&n.loc);
                if let Some(first) = seen_sections.get(section) {
                    d.push_hint(
                        &n.loc,
                        format!("section [{section}] is defined twice"),
                        format!("it is already defined at {first}; keep one"),
                    );
                    continue;
                }
                seen_sections.insert(section, here);
                match section {
                    "server" => decode_server(n, &mut cfg, &mut d),
                    "admin" => decode_admin(n, &mut cfg, &mut d, &src.files.dir),
                    "store" => decode_store(n, &mut cfg, &mut d),
                    "metrics" => decode_metrics(n, &mut cfg, &mut d),
                    "journal" => decode_journal(n, &mut cfg, &mut d),
                    _ => decode_fallback(n, &mut cfg, &mut d),
                }
            }
        }
        if let Some(n) = root.get("upstreams") {
            if let Some(t) = d.table(n, "upstreams") {
                for (k, v) in t.entries().unwrap_or(&[]) {
                    if let Some(first) = upstream_at.get(&k.name) {
                        d.push_hint(
                            &k.loc,
                            format!("upstream `{}` is defined twice", k.name),
                            format!("it is already defined at {first}"),
                        );
                        continue;
                    }
                    upstream_at.insert(k.name.clone(), src.at(&k.loc));
                    if let Some(u) = decode_upstream(&k.name, v, &mut d) {
                        cfg.upstreams.insert(k.name.clone(), u);
                    }
                }
            }
        }
        errors.extend(d.list.iter().map(|x| src.error(x)));
        docs.push((i, root));
    }

    if let Err(message) = overrides.apply(&mut cfg) {
        errors.push(ConfigError {
            file: "(command line)".into(),
            line: 1,
            col: 1,
            message,
            hint: None,
        });
    }
    // TLS is for an admin listener of its own (which `--admin-listen` may give).
    if cfg.admin.tls.is_some() && cfg.admin.listen.is_none() {
        let at = docs.iter().find_map(|(i, root)| {
            let x = root.get("admin")?.get("tls_cert")?;
            Some((*i, x.loc.clone()))
        });
        if let Some((i, loc)) = at {
            let mut d = Diags::strict();
            d.push_hint(
                &loc,
                "admin.tls_cert needs admin.listen: TLS is for an admin listener of its own",
                "set admin.listen, for example \"0.0.0.0:9443\"",
            );
            errors.extend(d.list.iter().map(|x| sources[i].error(x)));
        }
    }

    // The regex and template limits hold for the endpoints checked below.
    crate::limits::apply(&cfg.server);

    // Pass 2: endpoints, checked against the upstreams and the admin layout.
    let upstream_names = cfg.upstream_names();
    if let Some(f) = &cfg.fallback {
        if !upstream_names.contains(f) {
            if let Some((i, root)) = docs.iter().find(|(_, r)| r.get("fallback").is_some()) {
                let loc = root
                    .get("fallback")
                    .and_then(|n| n.get("upstream"))
                    .map(|n| n.loc.clone())
                    .unwrap_or(Loc::Span(0..0));
                let mut d = Diags::strict();
                d.push_hint(
                    &loc,
                    format!("fallback names an unknown upstream `{f}`"),
                    "define it in an [upstreams.NAME] section",
                );
                errors.extend(d.list.iter().map(|x| sources[*i].error(x)));
            }
        }
    }
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut routes: HashMap<String, String> = HashMap::new();
    for (i, root) in &docs {
        let src = &sources[*i];
        let Some(list) = root.get("endpoints") else {
            continue;
        };
        let ctx = SchemaContext {
            reserve_admin_path: cfg.admin.shares_mock_listener(),
            upstreams: &upstream_names,
            files: Some(&src.files),
        };
        let mut d = Diags::strict();
        let super::doc::Val::Array(items) = &list.val else {
            d.push_hint(
                &list.loc,
                format!(
                    "endpoints must be an array of tables, not {}",
                    list.type_name()
                ),
                "write each endpoint as a [[endpoints]] table",
            );
            errors.extend(d.list.iter().map(|x| src.error(x)));
            continue;
        };
        let stem = Path::new(&src.name)
            .file_stem()
            .map_or("endpoint".to_string(), |s| s.to_string_lossy().into_owned());
        for (n, item) in items.iter().enumerate() {
            let Some(t) = d.table(item, "each endpoint") else {
                continue;
            };
            let id = match t.get("id") {
                Some(idn) => match d.string(idn, "id") {
                    Some(s) if valid_file_id(s) => Some(s.to_string()),
                    Some(s) => {
                        d.push_hint(
                            &idn.loc,
                            format!("id `{s}` is not a valid endpoint id"),
                            "ids take letters, digits, `-`, `_` and `.`, and at least one non-digit (plain numbers belong to the admin API)",
                        );
                        None
                    }
                    None => None,
                },
                None => Some(format!("{stem}-{}", n + 1)),
            };
            let spec = decode_full(t, &ctx, &mut d, &["id"]);
            let (Some(id), Some(spec)) = (id, spec) else {
                continue;
            };
            let here = src.at(&t.loc);
            if let Some(first) = ids.get(&id) {
                d.push_hint(
                    &t.get("id").map_or(t.loc.clone(), |x| x.loc.clone()),
                    format!("endpoint id `{id}` is used twice"),
                    format!("it is already used at {first}"),
                );
                continue;
            }
            let key = spec.conflict_key();
            if let Some(first) = routes.get(&key) {
                d.push_hint(
                    &t.loc,
                    format!(
                        "endpoint {} {} is defined twice",
                        spec.verb,
                        spec.path.as_str()
                    ),
                    format!("the endpoint at {first} answers the same requests; remove one"),
                );
                continue;
            }
            if cfg.endpoints.len() == cfg.server.max_endpoints {
                d.push_hint(
                    &t.loc,
                    format!(
                        "this is endpoint {} of the config files, over server.max_endpoints ({})",
                        cfg.endpoints.len() + 1,
                        cfg.server.max_endpoints
                    ),
                    "raise server.max_endpoints (each endpoint takes about 1.4 KiB of memory) or split the mocks over gateways",
                );
            }
            ids.insert(id.clone(), here.clone());
            routes.insert(key, here);
            cfg.endpoints.push(FileEndpoint {
                id,
                spec,
                source: src.name.clone(),
            });
        }
        errors.extend(d.list.iter().map(|x| src.error(x)));
    }

    errors.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    if errors.is_empty() {
        cfg.endpoints.shrink_to_fit();
        Ok(cfg)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn valid_file_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !s.bytes().all(|b| b.is_ascii_digit())
}

fn secs(d: &mut Diags, n: &Node, what: &str, max: i128) -> Option<Duration> {
    d.int_in::<u64>(n, what, 0, max).map(Duration::from_secs)
}

fn millis(d: &mut Diags, n: &Node, what: &str) -> Option<Duration> {
    d.int_in::<u64>(n, what, 1, 3_600_000)
        .map(Duration::from_millis)
}

fn check_addr(d: &mut Diags, n: &Node, what: &str) -> Option<String> {
    let s = d.string(n, what)?;
    if s.parse::<std::net::SocketAddr>().is_err() {
        d.push_hint(
            &n.loc,
            format!("{what} `{s}` is not an address and port"),
            "write it as IP:PORT, for example 0.0.0.0:8080 or [::]:8080",
        );
        return None;
    }
    Some(s.to_string())
}

fn decode_server(n: &Node, cfg: &mut Config, d: &mut Diags) {
    let Some(t) = d.table(n, "[server]") else {
        return;
    };
    d.unknown_keys(t, "[server]", SERVER_KEYS);
    if let Some(l) = t.get("listen") {
        let mut list = Vec::new();
        match &l.val {
            super::doc::Val::Array(items) => {
                for it in items {
                    if let Some(a) = check_addr(d, it, "server.listen") {
                        list.push(a);
                    }
                }
                if items.is_empty() {
                    d.push(&l.loc, "server.listen must name at least one address");
                }
            }
            _ => {
                if let Some(a) = check_addr(d, l, "server.listen") {
                    list.push(a);
                }
            }
        }
        if !list.is_empty() {
            cfg.server.listen = list;
        }
    }
    if let Some(x) = t.get("threads") {
        if let Some(v) = d.int_in::<usize>(x, "server.threads", 1, 256) {
            cfg.server.threads = v;
        }
    }
    if let Some(x) = t.get("keepalive_timeout_secs") {
        if let Some(v) = d.int_in::<u64>(x, "server.keepalive_timeout_secs", 1, 3600) {
            let v = Duration::from_secs(v);
            cfg.server.keepalive_timeout = v;
        }
    }
    if let Some(x) = t.get("header_timeout_secs") {
        if let Some(v) = d.int_in::<u64>(x, "server.header_timeout_secs", 1, 3600) {
            cfg.server.header_timeout = Duration::from_secs(v);
        }
    }
    if let Some(x) = t.get("shutdown_grace_secs") {
        if let Some(v) = secs(d, x, "server.shutdown_grace_secs", 120) {
            cfg.server.shutdown_grace = v;
        }
    }
    if let Some(x) = t.get("public_url") {
        if let Some(s) = d.string(x, "server.public_url") {
            if s.starts_with("http://") || s.starts_with("https://") {
                cfg.server.public_url = Some(s.trim_end_matches('/').to_string());
            } else {
                d.push_hint(
                    &x.loc,
                    "server.public_url must be an http:// or https:// URL",
                    "for example http://mocks.example.com",
                );
            }
        }
    }
    if let Some(x) = t.get("h2c") {
        if let Some(b) = d.boolean(x, "server.h2c") {
            cfg.server.h2c = b;
        }
    }
    if let Some(x) = t.get("match_body_limit") {
        let max = i128::try_from(super::MAX_MATCH_BODY_LIMIT).unwrap_or(65536);
        if let Some(v) = d.int_in::<usize>(x, "server.match_body_limit", 0, max) {
            cfg.server.match_body_limit = v;
        }
    }
    if let Some(x) = t.get("watch_config") {
        if let Some(b) = d.boolean(x, "server.watch_config") {
            cfg.server.watch_config = b;
        }
    }
    let s = &mut cfg.server;
    let head_max = i128::try_from(super::MAX_HEADER_BYTES_LIMIT).unwrap_or(1 << 20);
    for (key, field, min, max) in [
        (
            "max_request_line_bytes",
            &mut s.max_request_line,
            256,
            head_max,
        ),
        ("max_header_bytes", &mut s.max_header_bytes, 1024, head_max),
        ("max_headers", &mut s.max_headers, 1, 256),
        ("max_connections", &mut s.max_connections, 1, 1_000_000),
        ("max_endpoints", &mut s.max_endpoints, 1, 10_000_000),
        (
            "max_template_output_bytes",
            &mut s.max_template_output,
            1,
            1 << 30,
        ),
        ("max_regex_bytes", &mut s.max_regex_bytes, 1024, 1 << 30),
    ] {
        if let Some(x) = t.get(key) {
            if let Some(v) = d.int_in::<usize>(x, &format!("server.{key}"), min, max) {
                *field = v;
            }
        }
    }
    if let Some(x) = t.get("body_timeout_secs") {
        if let Some(v) = d.int_in::<u64>(x, "server.body_timeout_secs", 1, 3600) {
            s.body_timeout = Duration::from_secs(v);
        }
    }
    if s.max_request_line > s.max_header_bytes {
        if let Some(x) = t
            .get("max_request_line_bytes")
            .or(t.get("max_header_bytes"))
        {
            d.push(
                &x.loc,
                format!(
                    "server.max_request_line_bytes ({}) is more than server.max_header_bytes ({})",
                    s.max_request_line, s.max_header_bytes
                ),
            );
        }
    }
}

fn decode_admin(n: &Node, cfg: &mut Config, d: &mut Diags, dir: &Path) {
    let Some(t) = d.table(n, "[admin]") else {
        return;
    };
    d.unknown_keys(t, "[admin]", ADMIN_KEYS);
    if let Some(x) = t.get("enabled") {
        if let Some(b) = d.boolean(x, "admin.enabled") {
            cfg.admin.enabled = b;
        }
    }
    if let Some(x) = t.get("listen") {
        cfg.admin.listen = check_addr(d, x, "admin.listen");
    }
    match (t.get("token"), t.get("token_env")) {
        (Some(_), Some(e)) => d.push_hint(
            &e.loc,
            "admin.token and admin.token_env cannot both be set",
            "keep token_env: a token in a file ends up in Git",
        ),
        (Some(x), None) => {
            if let Some(s) = d.string(x, "admin.token") {
                if s.is_empty() {
                    d.push(&x.loc, "admin.token must not be empty");
                } else {
                    cfg.admin.token = Some(s.to_string());
                }
            }
        }
        (None, Some(x)) => {
            if let Some(name) = d.string(x, "admin.token_env") {
                if name.is_empty() {
                    d.push(&x.loc, "admin.token_env must name an environment variable");
                } else {
                    cfg.admin.token_env = Some(name.to_string());
                }
            }
        }
        (None, None) => {}
    }
    if let Some(x) = t.get("max_body_bytes") {
        if let Some(v) = d.int_in::<usize>(x, "admin.max_body_bytes", 1024, 1 << 30) {
            cfg.admin.max_body_bytes = v;
        }
    }
    for (key, field) in [
        ("rate_per_client", &mut cfg.admin.rate_per_client),
        ("rate_per_token", &mut cfg.admin.rate_per_token),
    ] {
        if let Some(x) = t.get(key) {
            if let Some(v) = d.int_in::<u64>(x, &format!("admin.{key}"), 0, 1_000_000_000) {
                *field = v;
            }
        }
    }
    cfg.admin.tls = decode_tls(t, d, dir);
}

/// `admin.tls_cert` and `admin.tls_key`: both or neither, named relative to
/// the config file, read and checked (a certificate chain and the private
/// key that belongs to it) before the gateway starts.
fn decode_tls(t: &Node, d: &mut Diags, dir: &Path) -> Option<super::AdminTls> {
    let (cert, key) = match (t.get("tls_cert"), t.get("tls_key")) {
        (None, None) => return None,
        (Some(c), Some(k)) => (c, k),
        (Some(x), None) | (None, Some(x)) => {
            d.push(
                &x.loc,
                "admin.tls_cert and admin.tls_key go together: give both",
            );
            return None;
        }
    };
    let cert_name = d.string(cert, "admin.tls_cert")?.to_string();
    let key_name = d.string(key, "admin.tls_key")?.to_string();
    let tls = super::AdminTls {
        cert: dir.join(&cert_name),
        key: dir.join(&key_name),
    };
    match crate::tls::check(&tls) {
        Ok(()) => Some(tls),
        Err(crate::tls::TlsError::Cert(why)) => {
            d.push(&cert.loc, format!("admin.tls_cert `{cert_name}`: {why}"));
            None
        }
        Err(crate::tls::TlsError::Key(why)) => {
            d.push(&key.loc, format!("admin.tls_key `{key_name}`: {why}"));
            None
        }
    }
}

fn decode_store(n: &Node, cfg: &mut Config, d: &mut Diags) {
    let Some(t) = d.table(n, "[store]") else {
        return;
    };
    d.unknown_keys(t, "[store]", STORE_KEYS);
    let kind = match t.get("kind") {
        Some(k) => match d.string(k, "store.kind") {
            Some(s @ ("memory" | "embedded" | "redis")) => s,
            Some(other) => {
                d.push_hint(
                    &k.loc,
                    format!("store.kind `{other}` is not a store"),
                    "choose embedded (the default), redis or memory",
                );
                return;
            }
            None => return,
        },
        None => "embedded",
    };
    let path = t.get("path");
    let url = t.get("url");
    let for_kind = |d: &mut Diags, n: Option<&Node>, key: &str, kind_needed: &str| {
        if let Some(n) = n {
            d.push_hint(
                &n.loc,
                format!("store.{key} is for the {kind_needed} store, not {kind}"),
                format!("remove it, or set kind = \"{kind_needed}\""),
            );
        }
    };
    cfg.store = match kind {
        "memory" => {
            for_kind(d, path, "path", "embedded");
            for_kind(d, url, "url", "redis");
            StoreConfig::Memory
        }
        "embedded" => {
            for_kind(d, url, "url", "redis");
            let path = match path {
                Some(p) => match d.string(p, "store.path") {
                    Some("") => {
                        d.push(&p.loc, "store.path must not be empty");
                        return;
                    }
                    Some(s) => PathBuf::from(s),
                    None => return,
                },
                None => PathBuf::from(super::DEFAULT_DATA_PATH),
            };
            StoreConfig::Embedded { path }
        }
        _ => {
            for_kind(d, path, "path", "embedded");
            let url = match url {
                Some(u) => match d.string(u, "store.url") {
                    Some(s) if s.starts_with("redis://") || s.starts_with("rediss://") => {
                        s.to_string()
                    }
                    Some(s) => {
                        d.push_hint(
                            &u.loc,
                            format!("store.url `{s}` is not a Redis URL"),
                            "write it as redis://HOST:PORT/DB or rediss://... for TLS",
                        );
                        return;
                    }
                    None => return,
                },
                None => {
                    d.push_hint(
                        &t.loc,
                        "store.url is required for the redis store",
                        "for example url = \"redis://127.0.0.1:6379/0\"",
                    );
                    return;
                }
            };
            let prefix = match t.get("prefix") {
                Some(p) => match d.string(p, "store.prefix") {
                    Some(s) if !s.is_empty() && !s.contains(char::is_whitespace) => s.to_string(),
                    Some(_) => {
                        d.push(
                            &p.loc,
                            "store.prefix must be a non-empty word without spaces",
                        );
                        return;
                    }
                    None => return,
                },
                None => super::DEFAULT_REDIS_PREFIX.to_string(),
            };
            let check_interval = match t.get("check_interval_ms") {
                Some(x) => match d.int_in::<u64>(x, "store.check_interval_ms", 50, 600_000) {
                    Some(ms) => Duration::from_millis(ms),
                    None => return,
                },
                None => super::DEFAULT_REDIS_CHECK,
            };
            StoreConfig::Redis {
                url,
                prefix,
                check_interval,
            }
        }
    };
}

fn decode_journal(n: &Node, cfg: &mut Config, d: &mut Diags) {
    let Some(t) = d.table(n, "[journal]") else {
        return;
    };
    d.unknown_keys(t, "[journal]", JOURNAL_KEYS);
    let j = &mut cfg.journal;
    if let Some(x) = t.get("enabled") {
        if let Some(b) = d.boolean(x, "journal.enabled") {
            j.enabled = b;
        }
    }
    if let Some(x) = t.get("capacity") {
        if let Some(v) = d.int_in::<usize>(x, "journal.capacity", 1, 1_000_000) {
            j.capacity = v;
        }
    }
    if let Some(x) = t.get("max_body_bytes") {
        if let Some(v) = d.int_in::<usize>(x, "journal.max_body_bytes", 0, 1 << 20) {
            j.max_body_bytes = v;
        }
    }
    if let Some(x) = t.get("explain_404") {
        if let Some(b) = d.boolean(x, "journal.explain_404") {
            j.explain_404 = b;
        }
    }
}

fn decode_metrics(n: &Node, cfg: &mut Config, d: &mut Diags) {
    let Some(t) = d.table(n, "[metrics]") else {
        return;
    };
    d.unknown_keys(t, "[metrics]", METRICS_KEYS);
    let name = match t.get("service_name") {
        Some(x) => match d.string(x, "metrics.service_name") {
            Some(s) if !s.is_empty() => s.to_string(),
            Some(_) => {
                d.push(&x.loc, "metrics.service_name must not be empty");
                return;
            }
            None => return,
        },
        None => super::DEFAULT_SERVICE_NAME.to_string(),
    };
    let interval = match t.get("emf_interval_secs") {
        Some(x) => match d.int_in::<u64>(x, "metrics.emf_interval_secs", 1, 60) {
            Some(v) if 60 % v == 0 => Duration::from_secs(v),
            Some(_) => {
                d.push_hint(
                    &x.loc,
                    "metrics.emf_interval_secs must divide 60",
                    "use 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60",
                );
                return;
            }
            None => return,
        },
        None => super::DEFAULT_EMF_INTERVAL,
    };
    if let Some(x) = t.get("emf") {
        if d.boolean(x, "metrics.emf") == Some(true) {
            cfg.emf = Some(super::EmfConfig {
                service: name,
                interval,
            });
        }
    }
}

/// SHA-256 over each file's name and contents, in load order.
fn digest(sources: &[Source]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for s in sources {
        h.update(s.name.as_bytes());
        h.update([0u8]);
        h.update(s.text.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_fallback(n: &Node, cfg: &mut Config, d: &mut Diags) {
    let Some(t) = d.table(n, "[fallback]") else {
        return;
    };
    d.unknown_keys(t, "[fallback]", FALLBACK_KEYS);
    match t.get("upstream") {
        Some(x) => cfg.fallback = d.string(x, "fallback.upstream").map(str::to_string),
        None => d.push(&t.loc, "fallback.upstream is required"),
    }
}

fn decode_upstream(name: &str, n: &Node, d: &mut Diags) -> Option<Upstream> {
    let what = format!("[upstreams.{name}]");
    let t = d.table(n, &what)?;
    d.unknown_keys(t, &what, UPSTREAM_KEYS);
    let mut connect_timeout = super::DEFAULT_CONNECT_TIMEOUT;
    let mut read_timeout = super::DEFAULT_READ_TIMEOUT;
    let mut preserve_host = false;
    let mut verify_tls = true;
    if let Some(x) = t.get("connect_timeout_ms") {
        connect_timeout = millis(d, x, "connect_timeout_ms")?;
    }
    if let Some(x) = t.get("read_timeout_ms") {
        read_timeout = millis(d, x, "read_timeout_ms")?;
    }
    if let Some(x) = t.get("preserve_host") {
        preserve_host = d.boolean(x, "preserve_host")?;
    }
    if let Some(x) = t.get("verify_tls") {
        verify_tls = d.boolean(x, "verify_tls")?;
    }
    let Some(u) = t.get("url") else {
        d.push(&t.loc, format!("{what} needs a url"));
        return None;
    };
    let url = d.string(u, "url")?;
    match parse_upstream_url(url) {
        Ok((tls, host, port, authority)) => Some(Upstream {
            name: name.to_string(),
            url: url.to_string(),
            tls,
            host,
            port,
            authority,
            preserve_host,
            verify_tls,
            connect_timeout,
            read_timeout,
        }),
        Err(m) => {
            d.push_hint(
                &u.loc,
                m,
                "write it as http://HOST[:PORT] or https://HOST[:PORT]",
            );
            None
        }
    }
}

/// Splits an upstream URL into (tls, host, port, authority for `Host`).
pub fn parse_upstream_url(url: &str) -> Result<(bool, String, u16, String), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("upstream url `{url}` is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!(
                "upstream url `{url}` must start with http:// or https://"
            ))
        }
    };
    let Some(host) = uri.host() else {
        return Err(format!("upstream url `{url}` has no host"));
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "upstream url `{url}` must not have a path: requests keep their own path"
        ));
    }
    let default_port = if tls { 443 } else { 80 };
    let port = uri.port_u16().unwrap_or(default_port);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let authority = match uri.authority() {
        Some(a) => a.as_str().to_string(),
        None => host.clone(),
    };
    Ok((tls, host, port, authority))
}

/// For `validate`: a one-line summary of a loaded configuration.
pub fn summary(cfg: &Config) -> String {
    let mut per_file: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &cfg.endpoints {
        *per_file.entry(e.source.as_str()).or_default() += 1;
    }
    format!(
        "ok: {} file(s), {} endpoint(s), {} upstream(s){}",
        cfg.files.len(),
        cfg.endpoints.len(),
        cfg.upstreams.len(),
        cfg.fallback
            .as_ref()
            .map_or(String::new(), |f| format!(", fallback to `{f}`"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line and column of every character boundary, as counting from the
    /// start of the text gives them.
    #[test]
    fn positions_are_lines_and_characters() {
        let text = "a = 1\n\n[é]\nkey = \"ü\" # ß\n\nlast";
        let src = Source::new(
            "t.toml".into(),
            text.into(),
            FileContext {
                dir: PathBuf::new(),
                root: PathBuf::new(),
            },
        );
        for offset in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let col = before[start..].chars().count() + 1;
            assert_eq!(src.position(offset), (line, col), "offset {offset}");
        }
        assert_eq!(src.position(text.len() + 10), src.position(text.len()));
    }

    fn load_str(text: &str) -> Result<Config, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, text).unwrap();
        load(&[p])
    }

    fn errors(text: &str) -> Vec<String> {
        load_str(text)
            .unwrap_err()
            .0
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
            .collect()
    }

    #[test]
    fn reports_every_error_with_position() {
        let errs = errors(
            "[server]\nlisten = \"nope\"\nthreadz = 2\n\n[[endpoints]]\nverb = \"get\"\npath = \"/a b\"\n[endpoints.response]\ncode = 99\n",
        );
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(errs[0].starts_with("2:10: server.listen"), "{errs:?}");
        assert!(
            errs[1].starts_with("3:1: unknown key `threadz`"),
            "{errs:?}"
        );
        assert!(errs[2].starts_with("6:8: verb must be one of"), "{errs:?}");
        assert!(
            errs[3].starts_with("7:8: path has the character"),
            "{errs:?}"
        );
        assert!(
            errs[4].starts_with("9:8: response.code must be between 200 and 599"),
            "{errs:?}"
        );
    }

    #[test]
    fn syntax_errors_are_placed() {
        let errs = errors("[server\nthreads = 1\n");
        assert!(errs[0].starts_with("1:"), "{errs:?}");
        assert!(errs[0].contains("TOML syntax"), "{errs:?}");
    }

    #[test]
    fn ids_default_to_file_and_position() {
        let cfg = load_str(
            "[[endpoints]]\nverb = \"GET\"\npath = \"/a\"\nresponse = { code = 200 }\n[[endpoints]]\nid = \"b\"\nverb = \"GET\"\npath = \"/b\"\nresponse = { code = 200 }\n",
        )
        .unwrap();
        let ids: Vec<&str> = cfg.endpoints.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["t-1", "b"]);
    }

    #[test]
    fn store_section() {
        let cfg = load_str("[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6380/1\"\ncheck_interval_ms = 200\n").unwrap();
        assert_eq!(
            cfg.store,
            StoreConfig::Redis {
                url: "redis://127.0.0.1:6380/1".into(),
                prefix: "echo".into(),
                check_interval: Duration::from_millis(200),
            }
        );
        let cfg = load_str("[store]\nkind = \"memory\"\n").unwrap();
        assert_eq!(cfg.store, StoreConfig::Memory);
        let cfg = load_str("[store]\npath = \"x/y.redb\"\n").unwrap();
        assert_eq!(
            cfg.store,
            StoreConfig::Embedded {
                path: "x/y.redb".into()
            }
        );
        assert_eq!(load_str("").unwrap().store.kind(), "embedded");
        let errs = errors("[store]\nkind = \"memory\"\npath = \"a\"\n");
        assert!(
            errs[0].starts_with("3:8: store.path is for the embedded store"),
            "{errs:?}"
        );
        let errs = errors("[store]\nkind = \"redis\"\n");
        assert!(
            errs[0].starts_with("1:1: store.url is required"),
            "{errs:?}"
        );
        let errs = errors("[store]\nkind = \"etcd\"\n");
        assert!(
            errs[0].starts_with("2:8: store.kind `etcd` is not a store"),
            "{errs:?}"
        );
    }

    #[test]
    fn upstream_urls() {
        assert_eq!(
            parse_upstream_url("http://127.0.0.1:9000").unwrap(),
            (false, "127.0.0.1".into(), 9000, "127.0.0.1:9000".into())
        );
        assert_eq!(
            parse_upstream_url("https://api.example.com").unwrap().2,
            443
        );
        assert!(parse_upstream_url("ftp://x").is_err());
        assert!(parse_upstream_url("http://x/api").is_err());
    }
}
