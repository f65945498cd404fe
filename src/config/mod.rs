//! Configuration: the plain data the rest of the gateway runs on, its
//! defaults (all in this file), and the loading of TOML files (`file`).

pub mod doc;
pub mod endpoint;
mod file;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

pub use endpoint::{EndpointSpec, PathSpec, ResponseSpec, Verb};
pub use file::{load, summary, ConfigError, ConfigErrors};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_ADMIN_MAX_BODY: usize = 1024 * 1024;
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole configuration of one gateway process.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub upstreams: BTreeMap<String, Upstream>,
    /// Upstream for requests no endpoint matches (sidecar mode).
    pub fallback: Option<String>,
    pub endpoints: Vec<FileEndpoint>,
    /// The files the configuration was read from.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses of the mock listener.
    pub listen: Vec<String>,
    /// Worker threads of each listener.
    pub threads: usize,
    /// Idle time after which a keep-alive connection is closed.
    pub keepalive_timeout: Duration,
    /// Time given to requests in flight on SIGTERM.
    pub shutdown_grace: Duration,
    /// Base URL of the mock listener as clients reach it (for `Location`).
    pub public_url: Option<String>,
    /// Accept HTTP/2 with prior knowledge (h2c) besides HTTP/1.
    pub h2c: bool,
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
}

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
                shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
                public_url: None,
                h2c: false,
            },
            admin: AdminConfig {
                enabled: true,
                listen: None,
                token: None,
                token_env: None,
                max_body_bytes: DEFAULT_ADMIN_MAX_BODY,
            },
            upstreams: BTreeMap::new(),
            fallback: None,
            endpoints: Vec::new(),
            files: Vec::new(),
        }
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
