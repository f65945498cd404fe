//! Black-box test support: start the real `echo-gateway` binary on free
//! ports, wait until it answers, talk HTTP to it, stop it on drop.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_echo-gateway");
pub const JSONAPI: &str = "application/vnd.api+json";

/// Runs `echo-gateway validate` on a file or directory; the exit code and stderr.
pub fn validate(path: &Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("validate")
        .arg(path)
        .output()
        .expect("run validate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A port that was free a moment ago (the OS picked it for port 0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind to port 0")
}

/// A running gateway process.
pub struct Gateway {
    child: Child,
    pub port: u16,
    pub admin_port: Option<u16>,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

/// How to start a gateway.
#[derive(Default, Clone)]
pub struct Options {
    /// Written to `config.toml` in the gateway's own directory and passed with --config.
    pub config: Option<String>,
    /// Extra files written beside `config.toml` (name, contents); with any, the
    /// whole directory is passed with --config.
    pub files: Vec<(String, String)>,
    /// Give the admin API a listener of its own.
    pub admin_listener: bool,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The gateway's working directory instead of its own temporary one
    /// (config files and the log stay in its own).
    pub workdir: Option<PathBuf>,
}

impl Gateway {
    /// Starts the gateway on its defaults (admin API shared, memory store).
    pub fn start() -> Gateway {
        Self::start_with(Options::default())
    }

    pub fn with_config(toml: &str) -> Gateway {
        Self::start_with(Options {
            config: Some(toml.to_string()),
            ..Options::default()
        })
    }

    pub fn start_with(opts: Options) -> Gateway {
        let mut last_log = String::new();
        for _attempt in 0..5 {
            match Self::try_start(&opts) {
                Ok(gw) => return gw,
                Err(log) => last_log = log,
            }
        }
        panic!("the gateway did not start:\n{last_log}");
    }

    fn try_start(opts: &Options) -> Result<Gateway, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let admin_port = opts.admin_listener.then(free_port);
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(opts.workdir.as_deref().unwrap_or(dir.path()));
        if let Some(a) = admin_port {
            cmd.arg("--admin-listen").arg(format!("127.0.0.1:{a}"));
        }
        if let Some(cfg) = &opts.config {
            std::fs::write(dir.path().join("config.toml"), cfg).expect("write config");
        }
        for (name, text) in &opts.files {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("file's directory");
            }
            std::fs::write(path, text).expect("write file");
        }
        if !opts.files.is_empty() {
            cmd.arg("--config").arg(dir.path());
        } else if opts.config.is_some() {
            cmd.arg("--config").arg(dir.path().join("config.toml"));
        }
        cmd.args(&opts.args);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let log = dir.path().join("gateway.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(Stdio::from(log_file.try_clone().expect("clone log")))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn echo-gateway");
        let mut gw = Gateway {
            child,
            port,
            admin_port,
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(_)) = gw.child.try_wait() {
                return Err(gw.logs());
            }
            let up = |p: u16| {
                raw_request(
                    p,
                    "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                )
                .starts_with("HTTP/1.1 200")
            };
            if up(port) && admin_port.is_none_or(up) {
                return Ok(gw);
            }
            if Instant::now() > deadline {
                return Err(gw.logs());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The admin API's URL: its own listener, or the mock listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}{path}",
            self.admin_port.unwrap_or(self.port)
        )
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal and waits for the process to exit; returns its status.
    pub fn signal_and_wait(
        &mut self,
        signal: &str,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends raw bytes and reads until the server closes the connection (or 5 s).
pub fn raw_request(port: u16, request: &str) -> String {
    raw_bytes(port, request.as_bytes())
}

pub fn raw_bytes(port: u16, request: &[u8]) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(request).is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP client that follows no redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A JSON:API create document.
pub fn endpoint_doc(verb: &str, path: &str, code: u16, body: &str) -> serde_json::Value {
    serde_json::json!({"data": {"type": "endpoints", "attributes": {
        "verb": verb, "path": path, "response": {"code": code, "body": body}}}})
}

/// POSTs `doc` to the admin API; returns status and parsed body.
pub async fn post(gw: &Gateway, doc: &serde_json::Value) -> (u16, serde_json::Value) {
    send(gw, reqwest::Method::POST, "/endpoints", Some(doc)).await
}

pub async fn send(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    doc: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = client().request(method, gw.admin_url(path));
    if let Some(d) = doc {
        req = req.header("Content-Type", JSONAPI).body(d.to_string());
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let json = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (status, json)
}

/// A test upstream on a free port: answers every request with 200 and, as the
/// body, the request head it received followed by the request body. With
/// `silent`, it accepts connections and never answers.
pub struct TestUpstream {
    pub port: u16,
}

impl TestUpstream {
    pub fn echo() -> TestUpstream {
        Self::spawn(false)
    }

    pub fn silent() -> TestUpstream {
        Self::spawn(true)
    }

    fn spawn(silent: bool) -> TestUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                std::thread::spawn(move || serve_echo(conn, silent));
            }
        });
        TestUpstream { port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn serve_echo(mut conn: TcpStream, silent: bool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    while let Some((head, request_body)) = read_request(&mut conn, &mut buf) {
        if silent {
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        let mut body = head.into_bytes();
        body.extend_from_slice(&request_body);
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Upstream: echo\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if conn.write_all(resp.as_bytes()).is_err() || conn.write_all(&body).is_err() {
            return;
        }
    }
}

/// Reads one request from `conn`: its head (as text) and its Content-Length
/// body. `buf` carries bytes read past it to the next call. `None` once the
/// connection ends.
#[allow(dead_code)] // not every test binary runs an upstream
pub fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some((head, body))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `--store memory`: no database file, a fast start.
pub fn memory() -> Vec<String> {
    vec!["--store".into(), "memory".into()]
}

/// A gateway on the memory store serving this config file.
pub fn from_file(toml: &str) -> Gateway {
    Gateway::start_with(Options {
        config: Some(toml.to_string()),
        args: memory(),
        ..Options::default()
    })
}

/// A gateway with no config file and these endpoints created through the
/// admin API, in order (so the first is the oldest).
pub async fn from_api(endpoints: &[serde_json::Value]) -> Gateway {
    let gw = Gateway::start_with(Options {
        args: memory(),
        ..Options::default()
    });
    for attrs in endpoints {
        let (status, body) = post(&gw, &doc(attrs.clone())).await;
        assert_eq!(status, 201, "creating {attrs}: {body}");
    }
    gw
}

/// A JSON:API create document with these attributes.
pub fn doc(attributes: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"data": {"type": "endpoints", "attributes": attributes}})
}

/// Asserts that every line of `expected` (each `file:line:col: message`,
/// relative to `dir`) is reported, and that nothing else is.
pub fn assert_errors(dir: &std::path::Path, stderr: &str, expected: &[&str]) {
    let d = dir.display();
    for e in expected {
        let line = format!("{d}/{e}");
        assert!(stderr.contains(&line), "missing `{line}` in:\n{stderr}");
    }
    let reported = stderr
        .lines()
        .filter(|l| l.starts_with(&d.to_string()))
        .count();
    assert_eq!(reported, expected.len(), "{stderr}");
}

/// POSTs an endpoint and asserts a 422 with exactly these pointers.
pub async fn assert_422(gw: &Gateway, attributes: serde_json::Value, pointers: &[&str]) {
    let (status, body) = post(gw, &doc(attributes.clone())).await;
    assert_eq!(status, 422, "{attributes}: {body}");
    let mut got: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["source"]["pointer"].as_str().unwrap_or("<none>"))
        .collect();
    got.sort_unstable();
    let mut want = pointers.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "{attributes}: {body}");
    for e in body["errors"].as_array().expect("errors") {
        assert_eq!(e["code"], "invalid_attribute", "{body}");
        assert!(
            e["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
}
