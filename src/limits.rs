//! Process-wide limits read where no config is at hand: the compiled size
//! of a regular expression (checked when a config file or an admin document
//! is validated, and again when the router compiles it) and the size of a
//! rendered template. Both come from `[server]` and take effect when a
//! config is loaded, before its endpoints are checked.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::{ServerConfig, DEFAULT_MAX_REGEX_BYTES, DEFAULT_MAX_TEMPLATE_OUTPUT};

static REGEX_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_REGEX_BYTES);
static TEMPLATE_OUTPUT: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_TEMPLATE_OUTPUT);

/// Takes the limits of a loaded `[server]` section.
pub fn apply(server: &ServerConfig) {
    REGEX_BYTES.store(server.max_regex_bytes, Ordering::Relaxed);
    TEMPLATE_OUTPUT.store(server.max_template_output, Ordering::Relaxed);
}

/// `server.max_regex_bytes`: the `regex` crate's compiled size limit.
pub fn regex_bytes() -> usize {
    REGEX_BYTES.load(Ordering::Relaxed)
}

/// `server.max_template_output_bytes`.
pub fn template_output() -> usize {
    TEMPLATE_OUTPUT.load(Ordering::Relaxed)
}

/// Sizes of a request head (`[server]`): what Pingora would accept, and more,
/// is refused here with a status that names the limit.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// `max_request_line_bytes`: a longer request line is 414.
    pub line: usize,
    /// `max_header_bytes`: a larger head (request line and fields) is 431.
    pub bytes: usize,
    /// `max_headers`: more header fields are 431.
    pub fields: usize,
}

/// A request refused for breaking a limit; the connection is closed after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
}

impl Refusal {
    /// The JSON:API error answer, with `Connection: close`.
    pub fn reply(&self) -> crate::admin::Reply {
        let mut r = crate::admin::Reply::error(crate::admin::ErrorObject::new(
            self.status,
            self.code,
            &self.detail,
        ));
        r.close = true;
        r
    }
}

impl HeadLimits {
    pub fn of(server: &ServerConfig) -> HeadLimits {
        HeadLimits {
            line: server.max_request_line,
            bytes: server.max_header_bytes,
            fields: server.max_headers,
        }
    }

    /// Checks a request head whose request line is `line` bytes (without
    /// its line end), whose whole is `bytes` and which has `fields` header
    /// fields.
    pub fn check(&self, line: usize, bytes: usize, fields: usize) -> Option<Refusal> {
        if line > self.line {
            return Some(self.line_too_long());
        }
        if bytes > self.bytes {
            return Some(self.head_too_large());
        }
        if fields > self.fields {
            return Some(self.too_many_fields());
        }
        None
    }

    /// Checks a request header as Pingora parsed it (HTTP/1 or HTTP/2);
    /// sizes are those of its HTTP/1 form.
    pub fn check_header(&self, req: &pingora::http::RequestHeader) -> Option<Refusal> {
        let target = req.raw_path().len();
        let line = req.method.as_str().len() + 1 + target + " HTTP/1.1".len();
        let fields: usize = req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
            .sum();
        self.check(line, line + 2 + fields + 2, req.headers.len())
    }

    /// Checks a head not yet complete: `buf` holds its start.
    pub fn check_partial(&self, buf: &[u8]) -> Option<Refusal> {
        let line_end = buf.iter().position(|&b| b == b'\n');
        if line_end.map_or(buf.len(), |n| n.saturating_sub(1)) > self.line {
            return Some(self.line_too_long());
        }
        (buf.len() > self.bytes).then(|| self.head_too_large())
    }

    /// The length of the request line at the start of `buf`.
    pub fn line_len(buf: &[u8]) -> usize {
        let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
        if end > 0 && buf[end - 1] == b'\r' {
            end - 1
        } else {
            end
        }
    }

    pub fn line_too_long(&self) -> Refusal {
        Refusal {
            status: 414,
            code: "uri_too_long",
            detail: format!(
                "the request line is longer than {} bytes (server.max_request_line_bytes)",
                self.line
            ),
        }
    }

    pub fn head_too_large(&self) -> Refusal {
        Refusal {
            status: 431,
            code: "header_fields_too_large",
            detail: format!(
                "the request header is larger than {} bytes (server.max_header_bytes)",
                self.bytes
            ),
        }
    }

    pub fn too_many_fields(&self) -> Refusal {
        Refusal {
            status: 431,
            code: "header_fields_too_large",
            detail: format!(
                "the request has more than {} header fields (server.max_headers)",
                self.fields
            ),
        }
    }
}

/// Counts requests per key in fixed windows (`pingora-limits`); each
/// gateway process counts its own, so a rate holds per replica.
pub struct Window {
    rate: pingora_limits::rate::Rate,
}

impl Window {
    /// Windows of `per` (at least one second).
    pub fn new(per: std::time::Duration) -> Window {
        Window {
            rate: pingora_limits::rate::Rate::new(per.max(std::time::Duration::from_secs(1))),
        }
    }

    /// Counts one request for `key`. Over `limit` in the current window:
    /// `Some(seconds)` until the window ends (for `Retry-After`, at least 1).
    pub fn over<K: std::hash::Hash>(&self, key: &K, limit: u64) -> Option<u64> {
        let seen = self.rate.observe(key, 1);
        if u64::try_from(seen).unwrap_or(0) <= limit {
            return None;
        }
        let left = self.rate.rate_with(key, |c| {
            (1.0 - c.current_interval_fraction).clamp(0.0, 1.0) * c.interval.as_secs_f64()
        });
        // A whole number of seconds, rounded up (at most an hour).
        Some((left.ceil() as u64).clamp(1, 3600))
    }
}

/// Windows per length, shared by the endpoints that declare a rate: an
/// endpoint's count lives under its id and outlasts router rebuilds.
pub fn endpoint_window(per_secs: u32) -> std::sync::Arc<Window> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static WINDOWS: OnceLock<Mutex<HashMap<u32, Arc<Window>>>> = OnceLock::new();
    let mut map = WINDOWS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(per_secs)
        .or_insert_with(|| {
            Arc::new(Window::new(std::time::Duration::from_secs(u64::from(
                per_secs,
            ))))
        })
        .clone()
}

/// An endpoint's declared rate (`response.rate_limit`), counted under its id.
#[derive(Clone)]
pub struct EndpointRate {
    window: std::sync::Arc<Window>,
    pub requests: u32,
    pub per_secs: u32,
}

impl std::fmt::Debug for EndpointRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} per {} s", self.requests, self.per_secs)
    }
}

impl EndpointRate {
    pub fn new(limit: crate::config::endpoint::RateLimit) -> EndpointRate {
        EndpointRate {
            window: endpoint_window(limit.per_secs),
            requests: limit.requests,
            per_secs: limit.per_secs,
        }
    }

    /// Counts a request to endpoint `id`; `Some(retry_after_secs)` over the rate.
    pub fn over(&self, id: &str) -> Option<u64> {
        self.window.over(&id, u64::from(self.requests))
    }

    /// The 429 answer over the rate.
    pub fn refusal(&self, id: &str, retry_after: u64) -> crate::admin::Reply {
        crate::admin::Reply::error(crate::admin::ErrorObject::new(
            429,
            "too_many_requests",
            &format!(
                "endpoint `{id}` answers at most {} requests per {} s (response.rate_limit); retry after {retry_after} s",
                self.requests, self.per_secs
            ),
        ))
        .with_header("Retry-After", retry_after.to_string())
    }
}

/// The admin API's rate limits (`admin.rate_per_client`,
/// `admin.rate_per_token`), in windows of one second.
pub struct AdminRates {
    per_client: u64,
    per_token: u64,
    by_client: Window,
    by_token: Window,
}

impl AdminRates {
    pub fn new(admin: &crate::config::AdminConfig) -> AdminRates {
        let second = std::time::Duration::from_secs(1);
        AdminRates {
            per_client: admin.rate_per_client,
            per_token: admin.rate_per_token,
            by_client: Window::new(second),
            by_token: Window::new(second),
        }
    }

    /// Counts a request from `client`: the 429 when it is over its rate.
    pub fn client(&self, client: Option<std::net::IpAddr>) -> Option<crate::admin::Reply> {
        if self.per_client == 0 {
            return None;
        }
        let secs = self.by_client.over(&client, self.per_client)?;
        Some(too_many(
            format!(
                "client {} sent more than {} admin requests in a second (admin.rate_per_client)",
                client.map_or_else(|| "(unknown)".to_string(), |ip| ip.to_string()),
                self.per_client
            ),
            secs,
        ))
    }

    /// Counts an admin request with an accepted `token` (all clients
    /// together): the 429 when the token is over its rate.
    pub fn token(&self, token: &[u8]) -> Option<crate::admin::Reply> {
        if self.per_token == 0 {
            return None;
        }
        let secs = self.by_token.over(&token, self.per_token)?;
        Some(too_many(
            format!(
                "more than {} admin requests in a second came with this token (admin.rate_per_token)",
                self.per_token
            ),
            secs,
        ))
    }
}

fn too_many(detail: String, retry_after: u64) -> crate::admin::Reply {
    crate::admin::Reply::error(crate::admin::ErrorObject::new(
        429,
        "too_many_requests",
        &detail,
    ))
    .with_header("Retry-After", retry_after.to_string())
}
