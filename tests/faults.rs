//! Faults around the gateway, black-box against the real binary: an upstream
//! that resets in the middle of a body, trickles its answer or stalls; the
//! config directory deleted or made unreadable while the gateway runs; and
//! SIGTERM while requests are in flight.
//!
//! Covered elsewhere, not repeated here: a refused upstream (502) and one
//! that never answers a GET (504) in tests/passthrough.rs; Redis going away
//! and coming back in tests/replicas.rs (`replicas_ride_out_a_redis_restart`);
//! a full disk under the embedded store in tests/durability.rs; an idle
//! gateway's SIGTERM in tests/operations.rs.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

// ------------------------------------------------------------ raw HTTP

/// How a client connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The gateway closed it (FIN).
    Closed,
    /// The gateway reset it (RST).
    Reset,
    /// Nothing more came for the time the client waited: the connection is
    /// still open.
    Open,
}

/// What a client got for one request on a connection of its own.
#[derive(Debug)]
struct Exchange {
    bytes: Vec<u8>,
    end: End,
}

/// Status, header fields (names in lower case), and what followed the header.
type Parts<'a> = (u16, Vec<(String, String)>, &'a [u8]);

impl Exchange {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The status, the header fields (names in lower case) and the bytes
    /// after the header; `None` when no whole header came.
    fn parts(&self) -> Option<Parts<'_>> {
        let end = find(&self.bytes, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&self.bytes[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some((status, headers, &self.bytes[end + 4..]))
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `request` on a new connection and reads until the gateway closes
/// it or nothing more comes for `quiet`.
fn exchange(port: u16, request: &[u8], quiet: Duration) -> Exchange {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the gateway");
    s.set_read_timeout(Some(quiet)).expect("read timeout");
    s.write_all(request).expect("send the request");
    read_to_end(&mut s)
}

fn read_to_end(s: &mut TcpStream) -> Exchange {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16384];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break End::Closed,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break End::Open
            }
            Err(_) => break End::Reset,
        }
    };
    Exchange { bytes, end }
}

/// What a chunked body decodes to, and whether its last chunk came.
fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = find(body, b"\r\n") else {
            return (out, false);
        };
        let size_text = std::str::from_utf8(&body[..line_end]).unwrap_or("x");
        let size_text = size_text.split(';').next().unwrap_or("x").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return (out, false);
        };
        if size == 0 {
            return (out, true);
        }
        let data = &body[line_end + 2..];
        if data.len() < size + 2 {
            out.extend_from_slice(&data[..data.len().min(size)]);
            return (out, false);
        }
        out.extend_from_slice(&data[..size]);
        body = &data[size + 2..];
    }
}

// ------------------------------------------------------- scripted upstream

/// One thing a scripted upstream does after reading a request.
#[derive(Clone)]
enum Act {
    Send(Vec<u8>),
    Sleep(Duration),
    /// Closes the connection with a reset (SO_LINGER 0).
    Reset,
    /// Closes the connection (FIN).
    Close,
}

/// An upstream that reads each request (header and Content-Length body)
/// and plays the script its path selects; after a script with no `Reset`
/// the connection is kept for the next request.
fn scripted_upstream(script: fn(&str) -> Vec<Act>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || play(conn, script));
        }
    });
    port
}

fn play(mut conn: TcpStream, script: fn(&str) -> Vec<Act>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut buf = Vec::new();
    while let Some((head, _body)) = read_request(&mut conn, &mut buf) {
        let path = head.split(' ').nth(1).unwrap_or_default().to_string();
        for act in script(&path) {
            match act {
                Act::Send(bytes) => {
                    if conn.write_all(&bytes).is_err() {
                        return;
                    }
                }
                Act::Sleep(d) => std::thread::sleep(d),
                Act::Reset => {
                    let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
                    return;
                }
                Act::Close => return,
            }
        }
    }
}

/// The body a scripted upstream sends: 1000 bytes that are easy to check.
fn piece(n: usize) -> Vec<u8> {
    let mut v = format!("[piece {n:04}]").into_bytes();
    v.resize(1000, b'a' + (n % 26) as u8);
    v
}

fn chunk_of(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{:x}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

const LONG: usize = 100_000;

fn length_head(len: usize) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\r\n")
        .into_bytes()
}

const CHUNKED_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";

/// The gateway under test: `backend` is the fallback (sidecar mode) and the
/// upstream of the endpoint `/via/{*rest}`.
fn gateway_for(upstream: u16, read_timeout_ms: u64) -> Gateway {
    from_file(&format!(
        r#"
[upstreams.backend]
url = "http://127.0.0.1:{upstream}"
connect_timeout_ms = 1000
read_timeout_ms = {read_timeout_ms}

[fallback]
upstream = "backend"

[[endpoints]]
id = "proxied"
verb = "ANY"
path = "/via/{{*rest}}"
response = {{ code = 200, proxy = "backend" }}
"#
    ))
}

/// The four ways a request reaches the upstream: through the fallback or an
/// endpoint's `proxy`, each as a GET without a body (the listener's own
/// relay) and as a POST with one (Pingora's proxy).
const ROUTES: [(&str, &str); 4] = [("GET", ""), ("GET", "/via"), ("POST", ""), ("POST", "/via")];

fn request(method: &str, path: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    let body = if method == "POST" { "a=1" } else { "" };
    let length = if method == "POST" {
        "Content-Length: 3\r\n"
    } else {
        ""
    };
    format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{connection}{length}\r\n{body}").into_bytes()
}

/// The gateway still passes a request through whole.
fn assert_still_serving(gw: &Gateway, method: &str, prefix: &str) {
    let ok = exchange(
        gw.port,
        &request(method, &format!("{prefix}/ok"), true),
        Duration::from_secs(10),
    );
    let (status, _, body) = ok
        .parts()
        .unwrap_or_else(|| panic!("{method} {prefix}/ok: {:?}\n{}", ok, gw.logs()));
    assert_eq!(status, 200, "{method} {prefix}/ok: {}", ok.text());
    assert_eq!(body, b"fine", "{method} {prefix}/ok: {}", ok.text());
}

/// A 502 or 504 JSON error that names the upstream.
fn assert_named_error(what: &str, got: &Exchange, status: u16, detail_has: &[&str]) {
    let (s, headers, body) = got
        .parts()
        .unwrap_or_else(|| panic!("{what}: no response: {got:?}"));
    assert_eq!(s, status, "{what}: {}", got.text());
    assert_eq!(header(&headers, "content-type"), Some(JSONAPI), "{what}");
    let doc: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", got.text()));
    let detail = doc["errors"][0]["detail"].as_str().unwrap_or_default();
    for want in detail_has {
        assert!(detail.contains(want), "{what}: {detail}");
    }
}

/// A response the upstream did not finish: either no response was begun
/// and the client got a 502 naming the upstream, or the head was relayed
/// and the connection was then cut before the body's end (the body as far
/// as it came is the upstream's, and a chunked body has no last chunk).
fn assert_cut_short(what: &str, got: &Exchange, want_body: &[u8]) {
    assert_ne!(
        got.end,
        End::Open,
        "{what}: the client connection was left hanging: {got:?}"
    );
    let (status, headers, body) = got
        .parts()
        .unwrap_or_else(|| panic!("{what}: no response header: {got:?}"));
    if status == 502 {
        assert_named_error(what, got, 502, &["`backend`"]);
        eprintln!("{what}: 502 before a byte was relayed");
        return;
    }
    assert_eq!(status, 200, "{what}: {}", got.text());
    let received = match header(&headers, "content-length") {
        Some(len) => {
            assert_eq!(len, LONG.to_string(), "{what}");
            assert!(
                body.len() < LONG,
                "{what}: a body of {} bytes looks complete",
                body.len()
            );
            body.to_vec()
        }
        // A body that ends with the connection: only a reset tells the
        // client that it was cut.
        None if header(&headers, "transfer-encoding").is_none() => {
            assert_eq!(
                got.end,
                End::Reset,
                "{what}: a cut close-delimited body ended like a whole one: {got:?}"
            );
            body.to_vec()
        }
        None => {
            assert_eq!(
                header(&headers, "transfer-encoding"),
                Some("chunked"),
                "{what}: neither length nor chunked: {}",
                got.text()
            );
            let (data, last_chunk) = dechunk(body);
            assert!(
                !last_chunk,
                "{what}: the gateway ended a broken chunked body with its last chunk: {}",
                got.text()
            );
            data
        }
    };
    eprintln!(
        "{what}: head relayed, then cut after {} body bytes ({:?})",
        received.len(),
        got.end
    );
    assert!(
        want_body.starts_with(&received),
        "{what}: the relayed part is not the upstream's: {} bytes: {:?}",
        received.len(),
        String::from_utf8_lossy(&got.bytes[..got.bytes.len().min(1200)])
    );
}

// ---------------------------------------------------- upstream resets

fn resetting(path: &str) -> Vec<Act> {
    let part = piece(0);
    match path.rsplit('/').next().unwrap_or_default() {
        "ok" => vec![Act::Send(
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine".to_vec(),
        )],
        // The header and a first part of the body, then a reset.
        "length" => vec![
            Act::Send([length_head(LONG), part].concat()),
            Act::Sleep(Duration::from_millis(300)),
            Act::Reset,
        ],
        "chunked" => vec![
            Act::Send([CHUNKED_HEAD.to_vec(), chunk_of(&part)].concat()),
            Act::Sleep(Duration::from_millis(300)),
            Act::Reset,
        ],
        // A body that ends with the connection, cut by a reset.
        "close-delimited" => vec![
            Act::Send(
                [
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec(),
                    part,
                ]
                .concat(),
            ),
            Act::Sleep(Duration::from_millis(300)),
            Act::Reset,
        ],
        // The same, closed without a reset: still not the body's end.
        "length-fin" => vec![
            Act::Send([length_head(LONG), part].concat()),
            Act::Sleep(Duration::from_millis(300)),
            Act::Close,
        ],
        // A reset before a byte of response.
        _ => vec![Act::Reset],
    }
}

#[test]
fn an_upstream_that_resets_mid_body_cuts_the_client_connection() {
    let upstream = scripted_upstream(resetting);
    let gw = gateway_for(upstream, 5000);
    let quiet = Duration::from_secs(15);
    for (method, prefix) in ROUTES {
        for kind in ["length", "length-fin", "chunked", "close-delimited"] {
            let what = format!("{method} {prefix}/{kind}");
            // Keep-alive requests: a response taken for complete would leave
            // the connection open.
            let got = exchange(
                gw.port,
                &request(method, &format!("{prefix}/{kind}"), false),
                quiet,
            );
            assert_cut_short(&what, &got, &piece(0));
            assert_still_serving(&gw, method, prefix);
        }
        let what = format!("{method} {prefix}/nothing");
        let got = exchange(
            gw.port,
            &request(method, &format!("{prefix}/nothing"), false),
            quiet,
        );
        assert_named_error(&what, &got, 502, &["`backend`"]);
        assert_still_serving(&gw, method, prefix);
    }
    let logs = gw.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

// ------------------------------------------------------ slow upstreams

fn slow(path: &str) -> Vec<Act> {
    let mut acts = Vec::new();
    match path.rsplit('/').next().unwrap_or_default() {
        "ok" => acts.push(Act::Send(
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine".to_vec(),
        )),
        // Ten pieces over three seconds and more, no gap near the read timeout.
        "trickle" => {
            acts.push(Act::Sleep(Duration::from_millis(400)));
            acts.push(Act::Send(length_head(10 * 1000)));
            for n in 0..10 {
                acts.push(Act::Sleep(Duration::from_millis(300)));
                acts.push(Act::Send(piece(n)));
            }
        }
        "trickle-chunked" => {
            acts.push(Act::Sleep(Duration::from_millis(400)));
            acts.push(Act::Send(CHUNKED_HEAD.to_vec()));
            for n in 0..10 {
                acts.push(Act::Sleep(Duration::from_millis(300)));
                acts.push(Act::Send(chunk_of(&piece(n))));
            }
            acts.push(Act::Send(b"0\r\n\r\n".to_vec()));
        }
        // A first part, then nothing for far longer than the read timeout
        // (and than the client waits): only the gateway can end this.
        "stall" => {
            acts.push(Act::Send([length_head(LONG), piece(0)].concat()));
            acts.push(Act::Sleep(Duration::from_secs(40)));
            acts.push(Act::Close);
        }
        "stall-chunked" => {
            acts.push(Act::Send(
                [CHUNKED_HEAD.to_vec(), chunk_of(&piece(0))].concat(),
            ));
            acts.push(Act::Sleep(Duration::from_secs(40)));
            acts.push(Act::Close);
        }
        // Not a byte.
        _ => {
            acts.push(Act::Sleep(Duration::from_secs(40)));
            acts.push(Act::Close);
        }
    }
    acts
}

#[test]
fn a_slow_upstream_is_relayed_whole_and_a_stalled_one_is_cut_off() {
    let upstream = scripted_upstream(slow);
    let gw = std::sync::Arc::new(gateway_for(upstream, 1500));
    let whole: Vec<u8> = (0..10).flat_map(piece).collect();
    // The four routes at once: each takes seconds of waiting.
    let routes: Vec<_> = ROUTES
        .into_iter()
        .map(|(method, prefix)| {
            let gw = gw.clone();
            let whole = whole.clone();
            std::thread::spawn(move || {
                let quiet = Duration::from_secs(20);
                let path = |kind: &str| format!("{prefix}/{kind}");

                let what = format!("{method} {}", path("trickle"));
                let got = exchange(gw.port, &request(method, &path("trickle"), true), quiet);
                let (status, headers, body) = got
                    .parts()
                    .unwrap_or_else(|| panic!("{what}: {got:?}\n{}", gw.logs()));
                assert_eq!(status, 200, "{what}: {}", got.text());
                assert_eq!(header(&headers, "content-length"), Some("10000"), "{what}");
                assert!(body == whole.as_slice(), "{what}: {} bytes", body.len());

                let what = format!("{method} {}", path("trickle-chunked"));
                let got = exchange(
                    gw.port,
                    &request(method, &path("trickle-chunked"), true),
                    quiet,
                );
                let (status, _, body) = got
                    .parts()
                    .unwrap_or_else(|| panic!("{what}: {got:?}\n{}", gw.logs()));
                assert_eq!(status, 200, "{what}: {}", got.text());
                let (data, last_chunk) = dechunk(body);
                assert!(last_chunk, "{what}: no last chunk");
                assert!(data == whole, "{what}: {} bytes", data.len());

                for kind in ["stall", "stall-chunked"] {
                    let what = format!("{method} {}", path(kind));
                    let got = exchange(gw.port, &request(method, &path(kind), false), quiet);
                    assert_cut_short(&what, &got, &piece(0));
                    assert_still_serving(&gw, method, prefix);
                }

                let what = format!("{method} {}", path("silent"));
                let got = exchange(gw.port, &request(method, &path("silent"), false), quiet);
                assert_named_error(&what, &got, 504, &["`backend`", "1500 ms"]);
                assert_still_serving(&gw, method, prefix);
            })
        })
        .collect();
    for r in routes {
        if let Err(panic) = r.join() {
            std::panic::resume_unwind(panic);
        }
    }
    let logs = gw.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

// ------------------------------------------- the config directory goes away

fn version(n: usize) -> String {
    format!(
        "[[endpoints]]\nid = \"v\"\nverb = \"GET\"\npath = \"/v\"\nresponse = {{ code = 200, body = \"v{n}\" }}\n"
    )
}

/// Replaces a file the way editors and deploy tools do: write aside, rename.
fn replace(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write aside");
    std::fs::rename(&tmp, dir.join(name)).expect("rename into place");
}

/// Status and body of a GET on its own connection (0 when no answer came).
fn get(port: u16, path: &str) -> (u16, String) {
    let got = exchange(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    );
    match got.parts() {
        Some((status, _, body)) => (status, String::from_utf8_lossy(body).into_owned()),
        None => (0, got.text()),
    }
}

fn status_doc(gw: &Gateway) -> serde_json::Value {
    let (status, body) = get(gw.port, "/_echo/status");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("status is not JSON ({e}): {body}"))
}

fn wait_for_body(gw: &Gateway, path: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = get(gw.port, path);
        if got == (200, want.to_string()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} answers {got:?}, never {want}:\n{}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the status page reports a failed reload naming `path`;
/// returns its errors.
fn wait_for_failed_reload(gw: &Gateway, path: &Path) -> Vec<String> {
    let named = path.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let doc = status_doc(gw);
        let reload = &doc["config"]["last_reload"];
        let errors: Vec<String> = reload["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if reload["ok"] == false && errors.iter().any(|e| e.contains(&named)) {
            return errors;
        }
        assert!(
            Instant::now() < deadline,
            "no failed reload naming {named} reported: {doc}\n{}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A gateway on the config directory `conf` (its log is elsewhere) with a
/// runtime endpoint created through the admin API.
fn gateway_on_dir(conf: &Path) -> Gateway {
    let gw = Gateway::start_with(Options {
        args: vec![
            "--config".into(),
            conf.display().to_string(),
            "--store".into(),
            "memory".into(),
        ],
        ..Options::default()
    });
    wait_for_body(&gw, "/v", "v1");
    let doc = endpoint_doc("GET", "/runtime", 200, "rt").to_string();
    let created = exchange(
        gw.port,
        format!(
            "POST /endpoints HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: {JSONAPI}\r\nContent-Length: {}\r\n\r\n{doc}",
            doc.len()
        )
        .as_bytes(),
        Duration::from_secs(10),
    );
    assert_eq!(
        created.parts().map(|p| p.0),
        Some(201),
        "{}",
        created.text()
    );
    gw
}

/// While the config cannot be read: the last good config and the runtime
/// layer are served, the gateway is healthy and ready, the error names the
/// path in the log and on the status page.
fn assert_serving_the_last_config(gw: &Gateway, conf: &Path, errors: &[String]) {
    assert_eq!(get(gw.port, "/v"), (200, "v1".to_string()), "{errors:?}");
    assert_eq!(get(gw.port, "/runtime"), (200, "rt".to_string()));
    assert_eq!(get(gw.port, "/healthz").0, 200);
    assert_eq!(get(gw.port, "/readyz").0, 200);
    let logs = gw.logs();
    let named = conf.display().to_string();
    assert!(
        logs.lines()
            .any(|l| l.contains("config reload failed") && l.contains(&named)),
        "no error naming {named} in the log:\n{logs}"
    );
    assert!(!logs.contains("panicked"), "{logs}");
}

#[test]
fn a_deleted_config_directory_keeps_the_last_config_until_it_returns() {
    let root = tempfile::tempdir().expect("tempdir");
    let conf = root.path().join("conf.d");
    std::fs::create_dir(&conf).expect("mkdir");
    std::fs::write(conf.join("api.toml"), version(1)).expect("write");
    let gw = gateway_on_dir(&conf);

    std::fs::remove_dir_all(&conf).expect("delete the config directory");
    let errors = wait_for_failed_reload(&gw, &conf);
    assert_serving_the_last_config(&gw, &conf, &errors);

    // Back the way deploy tools put a directory in place: built aside, renamed.
    let staged = root.path().join("conf.d.new");
    std::fs::create_dir(&staged).expect("mkdir");
    std::fs::write(staged.join("api.toml"), version(2)).expect("write");
    std::fs::rename(&staged, &conf).expect("rename into place");
    wait_for_body(&gw, "/v", "v2");
    assert_eq!(status_doc(&gw)["config"]["last_reload"]["ok"], true);
    assert_eq!(get(gw.port, "/runtime"), (200, "rt".to_string()));

    // Edits in the new directory are followed as before.
    replace(&conf, "api.toml", &version(3));
    wait_for_body(&gw, "/v", "v3");
}

#[test]
fn an_unreadable_config_directory_keeps_the_last_config_until_it_is_readable() {
    let root = tempfile::tempdir().expect("tempdir");
    let conf = root.path().join("conf.d");
    std::fs::create_dir(&conf).expect("mkdir");
    std::fs::write(conf.join("api.toml"), version(1)).expect("write");
    let gw = gateway_on_dir(&conf);

    use std::os::unix::fs::PermissionsExt;
    let mode = |m| std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(m));
    mode(0o000).expect("chmod 000");
    let still_readable =
        std::fs::read_dir(&conf).is_ok() && std::fs::read_to_string(conf.join("api.toml")).is_ok();
    let away = root.path().join("conf.d.away");
    if still_readable {
        // Running as root, mode bits stop no read. The directory is made
        // unreadable for root as well: moved away, and in its place a
        // symbolic link to itself, which no one can follow (ELOOP).
        mode(0o755).expect("chmod 755");
        std::fs::rename(&conf, &away).expect("move the directory away");
        std::os::unix::fs::symlink("conf.d", &conf).expect("symlink loop");
        assert!(std::fs::read_dir(&conf).is_err());
    }
    let errors = wait_for_failed_reload(&gw, &conf);
    assert_serving_the_last_config(&gw, &conf, &errors);

    // Readable again, with a new version.
    if still_readable {
        std::fs::remove_file(&conf).expect("remove the symlink");
        std::fs::write(away.join("api.toml"), version(2)).expect("write");
        std::fs::rename(&away, &conf).expect("move the directory back");
    } else {
        mode(0o755).expect("chmod 755");
        replace(&conf, "api.toml", &version(2));
    }
    wait_for_body(&gw, "/v", "v2");
    assert_eq!(status_doc(&gw)["config"]["last_reload"]["ok"], true);
    replace(&conf, "api.toml", &version(3));
    wait_for_body(&gw, "/v", "v3");
}

// ------------------------------------------------------- SIGTERM under load

fn slow_upstream(path: &str) -> Vec<Act> {
    match path {
        "/slow-upstream" => vec![
            Act::Sleep(Duration::from_millis(2000)),
            Act::Send(
                b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nslow upstream answer".to_vec(),
            ),
        ],
        _ => vec![Act::Send(
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine".to_vec(),
        )],
    }
}

/// Reads one response with a Content-Length body from a kept-alive connection.
fn read_response(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = find(&bytes, b"\r\n\r\n") {
            let got = Exchange {
                bytes: bytes.clone(),
                end: End::Open,
            };
            let (status, headers, body) = got.parts()?;
            let len: usize = header(&headers, "content-length")?.parse().ok()?;
            if body.len() >= len {
                let body = String::from_utf8_lossy(&bytes[end + 4..end + 4 + len]).into_owned();
                return Some((status, body));
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn sigterm_under_load_finishes_the_requests_in_flight_and_takes_no_new_ones() {
    let upstream = scripted_upstream(slow_upstream);
    let mut gw = from_file(&format!(
        r#"
[server]
shutdown_grace_secs = 5

[upstreams.backend]
url = "http://127.0.0.1:{upstream}"
read_timeout_ms = 10000

[fallback]
upstream = "backend"

[[endpoints]]
verb = "GET"
path = "/warm"
response = {{ code = 200, body = "warm" }}

[[endpoints]]
verb = "GET"
path = "/slow-mock"
response = {{ code = 200, body = "slow mock answer", delay_ms = 2000 }}
"#
    ));
    let port = gw.port;

    // Eight clients, each on a connection the gateway has already served
    // (so the request is surely read, not waiting in the accept queue): four
    // wait on a delayed mock, four on a slow upstream.
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let sent_tx = sent_tx.clone();
            std::thread::spawn(move || {
                let path = if i % 2 == 0 {
                    "/slow-mock"
                } else {
                    "/slow-upstream"
                };
                let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                s.write_all(b"GET /warm HTTP/1.1\r\nHost: t\r\n\r\n")
                    .expect("send");
                assert_eq!(
                    read_response(&mut s),
                    Some((200, "warm".to_string())),
                    "warm-up"
                );
                s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
                    .expect("send");
                let _ = sent_tx.send(());
                let answer = read_response(&mut s);
                // After its answer the connection is closed: the client goes
                // elsewhere for its next request.
                let after = read_to_end(&mut s);
                (path, answer, after.end, after.bytes.len())
            })
        })
        .collect();
    // And an idle kept-alive connection.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    idle.write_all(b"GET /warm HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    assert_eq!(read_response(&mut idle), Some((200, "warm".to_string())));

    for _ in 0..8 {
        sent_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a client sent its request");
    }
    // Time for the gateway to read the requests (the answers take 2 s).
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());

    // New connections are refused while the grace period runs (5 s, and
    // the process cannot exit before it ends): the load balancer's health
    // check fails and new connections go to the other tasks.
    let refused_after = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                break signalled.elapsed()
            }
            Err(e) => panic!("connect: {e}"),
            Ok(mut s) => {
                // Accepted before the signal was handled: the gateway may
                // still answer, or already say it is shutting down.
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ =
                    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                let _ = read_to_end(&mut s);
            }
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(4),
            "the listener still accepts connections 4 s after SIGTERM\n{}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    // The idle connection is closed.
    let idle_end = read_to_end(&mut idle);
    assert_eq!(idle_end.end, End::Closed, "{idle_end:?}");
    assert!(idle_end.bytes.is_empty(), "{}", idle_end.text());

    // Every request in flight gets its whole answer.
    for c in clients {
        let (path, answer, end, trailing) = c.join().expect("client thread");
        let want = if path == "/slow-mock" {
            "slow mock answer"
        } else {
            "slow upstream answer"
        };
        assert_eq!(
            answer,
            Some((200, want.to_string())),
            "{path} in flight at SIGTERM\n{}",
            gw.logs()
        );
        assert_eq!(
            (end, trailing),
            (End::Closed, 0),
            "{path}: after the answer"
        );
    }

    // And the process exits cleanly once the grace period is over.
    let status = gw
        .signal_and_wait("0", Duration::from_secs(20))
        .expect("exited after SIGTERM");
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}\n{}", gw.logs());
    assert!(took < Duration::from_secs(15), "{took:?}");
    eprintln!("SIGTERM: new connections refused after {refused_after:?}, exit after {took:?}");
}
