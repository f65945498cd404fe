//! Configuration: the plain data the rest of the gateway runs on, its
//! defaults (all in this file), and the loading of TOML files (`file`).

pub mod conditions;
pub mod doc;
pub mod endpoint;
mod file;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

pub use endpoint::{EndpointSpec, PathSpec, ResponseSpec, Verb};
pub use file::{load, load_str, load_with, summary, ConfigError, ConfigErrors};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_ADMIN_MAX_BODY: usize = 1024 * 1024;
/// Pingora buffers at most 64 KiB of a request body for replay to an upstream.
pub const MAX_MATCH_BODY_LIMIT: usize = 64 * 1024;
pub const DEFAULT_MATCH_BODY_LIMIT: usize = MAX_MATCH_BODY_LIMIT;
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);
/// Time a request header has to arrive in all (nginx's `client_header_timeout`).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest request line (method, target, version) before 414.
pub const DEFAULT_MAX_REQUEST_LINE: usize = 8 * 1024;
/// Largest request head (request line and header fields) before 431.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// Pingora's HTTP/1 parser reads at most this much of a request head.
pub const MAX_HEADER_BYTES_LIMIT: usize = 1_048_575;
/// Most header fields in one request before 431.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Pingora's HTTP/1 parser reads at most this many header fields.
pub const MAX_HEADERS_LIMIT: usize = 256;
/// Open connections per listener; more are answered 503 and closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Time between two reads of a request body before 408.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// File and runtime endpoints together.
pub const DEFAULT_MAX_ENDPOINTS: usize = 200_000;
/// Largest body a template may render.
pub const DEFAULT_MAX_TEMPLATE_OUTPUT: usize = 4 * 1024 * 1024;
/// Compiled size of one regular expression (path or condition).
pub const DEFAULT_MAX_REGEX_BYTES: usize = 1024 * 1024;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SERVICE_NAME: &str = "echo-gateway";
pub const DEFAULT_EMF_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_DATA_PATH: &str = "data/echo-gateway.redb";
pub const DEFAULT_REDIS_PREFIX: &str = "echo";
pub const DEFAULT_REDIS_CHECK: Duration = Duration::from_secs(2);

/// The whole configuration of one gateway process.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub upstreams: BTreeMap<String, Upstream>,
    /// Upstream for requests no endpoint matches (sidecar mode).
    pub fallback: Option<String>,
    pub endpoints: Vec<FileEndpoint>,
    /// Where runtime endpoints live.
    pub store: StoreConfig,
    /// The CloudWatch EMF request metric, when enabled.
    pub emf: Option<EmfConfig>,
    pub journal: JournalConfig,
    /// The files the configuration was read from.
    pub files: Vec<PathBuf>,
    /// SHA-256 over the files' names and contents, to tell configs apart.
    pub digest: String,
}

/// The request journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    pub enabled: bool,
    /// Requests kept; the oldest go first.
    pub capacity: usize,
    /// Bytes of each request body kept.
    pub max_body_bytes: usize,
    /// Put the nearest misses in the `meta` of every 404 body.
    pub explain_404: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            enabled: true,
            capacity: 1000,
            max_body_bytes: 4096,
            explain_404: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmfConfig {
    /// The `ServiceName` dimension.
    pub service: String,
    /// One line per interval, aligned to wall-clock multiples of it.
    pub interval: Duration,
}

impl EmfConfig {
    pub fn new(service: String) -> EmfConfig {
        EmfConfig {
            service,
            interval: DEFAULT_EMF_INTERVAL,
        }
    }
}

/// The store of the runtime layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Nothing outlives the process.
    Memory,
    /// An embedded database file (redb); the default.
    Embedded { path: PathBuf },
    /// Shared by every replica.
    Redis {
        url: String,
        /// Prefix of every key, so that gateways of several environments can share a Redis.
        prefix: String,
        /// How often each replica compares its revision with Redis's.
        check_interval: Duration,
    },
}

impl StoreConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            StoreConfig::Memory => "memory",
            StoreConfig::Embedded { .. } => "embedded",
            StoreConfig::Redis { .. } => "redis",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses of the mock listener.
    pub listen: Vec<String>,
    /// Worker threads of each listener.
    pub threads: usize,
    /// Idle time after which a keep-alive connection is closed.
    pub keepalive_timeout: Duration,
    /// Time a request header has to arrive in all, from its first byte;
    /// a client that dribbles it in is disconnected.
    pub header_timeout: Duration,
    /// Time given to requests in flight on SIGTERM.
    pub shutdown_grace: Duration,
    /// Base URL of the mock listener as clients reach it (for `Location`).
    pub public_url: Option<String>,
    /// Accept HTTP/2 with prior knowledge (h2c) besides HTTP/1.
    pub h2c: bool,
    /// Reload the config files when they change (SIGHUP always reloads).
    pub watch_config: bool,
    /// Request bodies up to this size are read for body conditions.
    pub match_body_limit: usize,
    /// Longest request line; longer ones are answered 414.
    pub max_request_line: usize,
    /// Largest request head; larger ones are answered 431.
    pub max_header_bytes: usize,
    /// Most header fields in a request; more are answered 431.
    pub max_headers: usize,
    /// Open connections per listener; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time between two reads of a request body; a slower client gets 408.
    pub body_timeout: Duration,
    /// File and runtime endpoints together; an admin create beyond is 507.
    pub max_endpoints: usize,
    /// Largest body a template renders; a larger one is a 500 naming it.
    pub max_template_output: usize,
    /// Compiled size of a regular expression (`path_regex`, conditions).
    pub max_regex_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub enabled: bool,
    /// A listener of its own; `None` shares the mock listener (the Echo model).
    pub listen: Option<String>,
    /// Bearer token every admin request must carry.
    pub token: Option<String>,
    /// Environment variable that holds the token, read when serving starts.
    pub token_env: Option<String>,
    pub max_body_bytes: usize,
    /// Admin requests per second from one client address; 0: no limit.
    pub rate_per_client: u64,
    /// Admin requests per second with one token, from all clients; 0: no limit.
    pub rate_per_token: u64,
    /// TLS on the admin listener: certificate chain and private key (PEM).
    pub tls: Option<AdminTls>,
}

/// The admin listener's certificate and key files, as resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Admin requests per second per client address, by default.
pub const DEFAULT_ADMIN_RATE_PER_CLIENT: u64 = 1000;

impl AdminConfig {
    /// Whether `/endpoints` belongs to the admin API on the mock listener.
    pub fn shares_mock_listener(&self) -> bool {
        self.enabled && self.listen.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The `Host` header sent upstream: the upstream's authority unless
    /// `preserve_host` keeps the client's.
    pub authority: String,
    pub preserve_host: bool,
    pub verify_tls: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// An endpoint from a config file: read-only through the admin API.
#[derive(Debug, Clone)]
pub struct FileEndpoint {
    pub id: String,
    pub spec: EndpointSpec,
    /// The file it came from, as given on the command line.
    pub source: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                listen: vec![DEFAULT_LISTEN.to_string()],
                threads: 1,
                keepalive_timeout: DEFAULT_KEEPALIVE,
                header_timeout: DEFAULT_HEADER_TIMEOUT,
                shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
                public_url: None,
                h2c: false,
                watch_config: true,
                match_body_limit: DEFAULT_MATCH_BODY_LIMIT,
                max_request_line: DEFAULT_MAX_REQUEST_LINE,
                max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
                max_headers: DEFAULT_MAX_HEADERS,
                max_connections: DEFAULT_MAX_CONNECTIONS,
                body_timeout: DEFAULT_BODY_TIMEOUT,
                max_endpoints: DEFAULT_MAX_ENDPOINTS,
                max_template_output: DEFAULT_MAX_TEMPLATE_OUTPUT,
                max_regex_bytes: DEFAULT_MAX_REGEX_BYTES,
            },
            admin: AdminConfig {
                enabled: true,
                listen: None,
                token: None,
                token_env: None,
                max_body_bytes: DEFAULT_ADMIN_MAX_BODY,
                rate_per_client: DEFAULT_ADMIN_RATE_PER_CLIENT,
                rate_per_token: 0,
                tls: None,
            },
            upstreams: BTreeMap::new(),
            fallback: None,
            endpoints: Vec::new(),
            store: StoreConfig::Embedded {
                path: PathBuf::from(DEFAULT_DATA_PATH),
            },
            emf: None,
            journal: JournalConfig::default(),
            files: Vec::new(),
            digest: String::new(),
        }
    }
}

/// Settings given on the command line (or its environment variables); they
/// replace those of the files.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Vec<String>,
    pub admin_listen: Option<String>,
    /// `memory`, `embedded` or `redis`.
    pub store: Option<String>,
    /// The embedded store's file.
    pub data: Option<PathBuf>,
    pub redis_url: Option<String>,
    /// The admin token (from the environment: a token on a command line is
    /// visible to every user of the machine).
    pub admin_token: Option<String>,
    /// Turn the EMF request metric on (`ECHO_EMF`), under this service name
    /// (`ECHO_SERVICE_NAME`).
    pub emf: Option<bool>,
    pub service_name: Option<String>,
}

impl Overrides {
    pub fn apply(&self, cfg: &mut Config) -> Result<(), String> {
        for a in self.listen.iter().chain(&self.admin_listen) {
            if a.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!(
                    "`{a}` is not an address and port (for example 0.0.0.0:8080)"
                ));
            }
        }
        if !self.listen.is_empty() {
            cfg.server.listen = self.listen.clone();
        }
        if let Some(a) = &self.admin_listen {
            cfg.admin.listen = Some(a.clone());
        }
        match self.emf {
            Some(true) if cfg.emf.is_none() => {
                cfg.emf = Some(EmfConfig::new(DEFAULT_SERVICE_NAME.into()));
            }
            Some(false) => cfg.emf = None,
            _ => {}
        }
        if let (Some(name), Some(emf)) = (&self.service_name, cfg.emf.as_mut()) {
            emf.service.clone_from(name);
        }
        if let Some(t) = self.admin_token.as_ref().filter(|t| !t.is_empty()) {
            cfg.admin.token = Some(t.clone());
            cfg.admin.token_env = None;
        }
        let kind = match (&self.store, &self.redis_url, &self.data) {
            (Some(k), _, _) => k.as_str(),
            (None, Some(_), _) => "redis",
            (None, None, Some(_)) => "embedded",
            (None, None, None) => return Ok(()),
        };
        cfg.store = match kind {
            "memory" => StoreConfig::Memory,
            "embedded" => StoreConfig::Embedded {
                path: match (&self.data, &cfg.store) {
                    (Some(p), _) => p.clone(),
                    (None, StoreConfig::Embedded { path }) => path.clone(),
                    (None, _) => PathBuf::from(DEFAULT_DATA_PATH),
                },
            },
            "redis" => {
                let (prefix, check_interval, file_url) = match &cfg.store {
                    StoreConfig::Redis {
                        url,
                        prefix,
                        check_interval,
                    } => (prefix.clone(), *check_interval, Some(url.clone())),
                    _ => (DEFAULT_REDIS_PREFIX.to_string(), DEFAULT_REDIS_CHECK, None),
                };
                let Some(url) = self.redis_url.clone().or(file_url) else {
                    return Err(
                        "the redis store needs a URL: --redis-url redis://HOST:PORT/DB".into(),
                    );
                };
                StoreConfig::Redis {
                    url,
                    prefix,
                    check_interval,
                }
            }
            other => {
                return Err(format!(
                    "`{other}` is not a store: choose embedded, redis or memory"
                ))
            }
        };
        Ok(())
    }
}

impl Config {
    /// Reads the values the config takes from the environment (the admin
    /// token). `validate` does not call it: a GitOps check has no secrets.
    pub fn resolve_env(&mut self) -> Result<(), String> {
        if let Some(name) = &self.admin.token_env {
            match std::env::var(name) {
                Ok(v) if !v.is_empty() => self.admin.token = Some(v),
                _ => {
                    return Err(format!(
                        "admin.token_env names `{name}`, which is not set or is empty: set it, or remove token_env to run the admin API without a token"
                    ))
                }
            }
        }
        Ok(())
    }

    pub fn upstream_names(&self) -> HashSet<String> {
        self.upstreams.keys().cloned().collect()
    }
}
