//! Limits against clients that take their time or send too much.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// A request header that dribbles in is cut off once `header_timeout_secs`
/// have passed since its first byte, however steadily its bytes arrive; a
/// request that arrives in time on the same gateway is answered.
#[test]
fn a_header_that_dribbles_in_is_cut_off() {
    let gw = from_file(
        r#"
[server]
header_timeout_secs = 1

[[endpoints]]
verb = "GET"
path = "/x"
response = { code = 200, body = "x" }
"#,
    );
    let mut conn = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    conn.write_all(b"GET /x HTTP/1.1\r\n").unwrap();
    // One header line every 200 ms: each read is quick, the whole is not.
    let mut cut_after = None;
    for i in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        if conn
            .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
            .is_err()
        {
            cut_after = Some(started.elapsed());
            break;
        }
    }
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    let cut_after = cut_after.unwrap_or_else(|| started.elapsed());
    assert!(
        cut_after < Duration::from_secs(4),
        "still open after {cut_after:?}"
    );
    assert!(
        rest.is_empty(),
        "answered: {}",
        String::from_utf8_lossy(&rest)
    );

    let answered = raw_request(
        gw.port,
        "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(answered.ends_with("\r\n\r\nx"), "{answered}");
}

/// The header timeout is checked where it is written.
#[test]
fn a_header_timeout_out_of_range_is_an_error_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("echo.toml");
    std::fs::write(&file, "[server]\nheader_timeout_secs = 0\n").unwrap();
    let (code, stderr) = validate(&file);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:2:23: server.header_timeout_secs must be between 1 and 3600, not 0",
            file.display()
        )),
        "{stderr}"
    );
}

/// Arbitrary bytes where a request should be (valid requests with bytes
/// flipped, cut short, repeated, or with long and many headers) never stop
/// the gateway: whatever it answers is an HTTP/1.1 response, and a valid
/// request after each batch, to a mock and through the pass-through, is
/// answered as ever.
#[test]
fn garbage_requests_never_stop_the_gateway() {
    let up = TestUpstream::echo();
    let gw = from_file(&format!(
        r#"
[upstreams.app]
url = "{}"

[[endpoints]]
verb = "GET"
path = "/x"
response = {{ code = 200, body = "x" }}

[[endpoints]]
verb = "ANY"
path = "/up/{{*rest}}"
response = {{ code = 200, proxy = "app" }}
"#,
        up.url()
    ));
    let seeds: [&[u8]; 5] = [
        b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /up/a?b=c HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
        b"POST /up/p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /nothing HTTP/1.0\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"HEAD /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for batch in 0..8 {
        for _ in 0..100 {
            let mut input = seeds[rng.usize(..seeds.len())].to_vec();
            match rng.u8(..6) {
                0 => {
                    for _ in 0..rng.usize(1..8) {
                        let i = rng.usize(..input.len());
                        input[i] = rng.u8(..);
                    }
                }
                1 => input.truncate(rng.usize(..input.len())),
                2 => {
                    let at = input.len() - 2;
                    let line = format!("X-Long: {}\r\n", "v".repeat(rng.usize(1..40_000)));
                    input.splice(at..at, line.into_bytes());
                }
                3 => {
                    let at = input.len() - 2;
                    let lines: String = (0..rng.usize(50..300))
                        .map(|i| format!("X-{i}: {i}\r\n"))
                        .collect();
                    input.splice(at..at, lines.into_bytes());
                }
                4 => {
                    let copy = input.clone();
                    for _ in 0..rng.usize(1..20) {
                        input.extend_from_slice(&copy);
                    }
                }
                _ => input = (0..rng.usize(1..200)).map(|_| rng.u8(..)).collect(),
            }
            let Ok(mut conn) = TcpStream::connect(("127.0.0.1", gw.port)) else {
                panic!("batch {batch}: the gateway takes no connection");
            };
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = conn.write_all(&input);
            let _ = conn.shutdown(std::net::Shutdown::Write);
            let mut answer = Vec::new();
            let _ = conn.read_to_end(&mut answer);
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
                "{:?} got {:?}",
                String::from_utf8_lossy(&input),
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            );
        }
        let x = raw_request(
            gw.port,
            "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        assert!(
            x.starts_with("HTTP/1.1 200") && x.ends_with("\r\n\r\nx"),
            "batch {batch}: {x}"
        );
        let relayed = raw_request(
            gw.port,
            "GET /up/after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        assert!(
            relayed.contains("\r\n\r\nGET /up/after HTTP/1.1"),
            "batch {batch}: {relayed}"
        );
    }
    let logs = gw.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

/// Reads one response from `conn` (headers and a Content-Length body).
fn read_response(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return text;
            }
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn headers(n: usize) -> String {
    (0..n).map(|i| format!("X-H{i}: {i}\r\n")).collect()
}

/// Request line and header limits: 414 and 431 with a JSON:API error that
/// names the setting, then the connection closes; on the fast path, on a
/// connection Pingora serves (after a request with a body), on the admin
/// listener, and for a header that never ends.
#[test]
fn request_line_and_header_limits_are_414_and_431_naming_the_setting() {
    let gw = Gateway::start_with(Options {
        config: Some(
            r#"
[server]
max_request_line_bytes = 300
max_header_bytes = 2048
max_headers = 10

[[endpoints]]
verb = "GET"
path = "/x"
response = { code = 200, body = "x" }

[[endpoints]]
verb = "POST"
path = "/p"
response = { code = 201, body = "p" }
"#
            .into(),
        ),
        args: memory(),
        admin_listener: true,
        ..Options::default()
    });
    let check = |resp: &str, status: &str, detail: &str| {
        assert!(resp.starts_with(&format!("HTTP/1.1 {status}")), "{resp}");
        assert!(resp.contains("Connection: close\r\n"), "{resp}");
        let body = &resp[resp.find("\r\n\r\n").expect("a header") + 4..];
        let doc: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(doc["errors"][0]["detail"], detail, "{resp}");
    };
    let line_detail = "the request line is longer than 300 bytes (server.max_request_line_bytes)";
    let fields_detail = "the request has more than 10 header fields (server.max_headers)";
    let bytes_detail = "the request header is larger than 2048 bytes (server.max_header_bytes)";
    let long_target = format!("/x?{}", "q".repeat(300));

    for port in [gw.port, gw.admin_port.expect("admin port")] {
        let ok = raw_request(
            port,
            &format!(
                "GET /x HTTP/1.1\r\nHost: a\r\n{}Connection: close\r\n\r\n",
                headers(8)
            ),
        );
        assert!(
            ok.starts_with("HTTP/1.1 200") || ok.starts_with("HTTP/1.1 404"),
            "ten fields pass: {ok}"
        );
        let resp = raw_request(
            port,
            &format!("GET {long_target} HTTP/1.1\r\nHost: a\r\n\r\n"),
        );
        check(&resp, "414", line_detail);
        let resp = raw_request(
            port,
            &format!("GET /x HTTP/1.1\r\nHost: a\r\n{}\r\n", headers(10)),
        );
        check(&resp, "431", fields_detail);
        let big = format!(
            "GET /x HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
            "b".repeat(2100)
        );
        check(&raw_request(port, &big), "431", bytes_detail);
    }

    // A header that never ends is refused once it passes the limit, long
    // before the header timeout.
    let started = Instant::now();
    let endless = format!("GET /x HTTP/1.1\r\nHost: a\r\nX-Big: {}", "b".repeat(3000));
    check(&raw_request(gw.port, &endless), "431", bytes_detail);
    assert!(started.elapsed() < Duration::from_secs(10));

    // A connection that Pingora serves (its first request had a body).
    let mut conn = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    let first = read_response(&mut conn);
    assert!(first.starts_with("HTTP/1.1 201"), "{first}");
    conn.write_all(format!("GET /x HTTP/1.1\r\nHost: a\r\n{}\r\n", headers(12)).as_bytes())
        .unwrap();
    check(&read_response(&mut conn), "431", fields_detail);
    let mut conn = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    assert!(read_response(&mut conn).starts_with("HTTP/1.1 201"));
    conn.write_all(format!("GET {long_target} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .unwrap();
    check(&read_response(&mut conn), "414", line_detail);

    let metrics = raw_request(
        gw.port,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(
        metrics.contains("echo_refused_total{reason=\"header\"} 9"),
        "{metrics}"
    );
}

/// Limits out of range, or that contradict each other, are errors at
/// their place.
#[test]
fn limits_out_of_range_are_errors_at_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("echo.toml");
    std::fs::write(
        &file,
        "[server]\nmax_headers = 300\nmax_request_line_bytes = 4096\nmax_header_bytes = 2048\nmax_connections = 0\nbody_timeout_secs = 0\nmax_template_output_bytes = 0\n\n[admin]\nrate_per_client = -1\n",
    )
    .unwrap();
    let (code, stderr) = validate(&file);
    assert_eq!(code, Some(1), "{stderr}");
    assert_errors(
        dir.path(),
        &stderr,
        &[
            "echo.toml:2:15: server.max_headers must be between 1 and 256, not 300",
            "echo.toml:3:26: server.max_request_line_bytes (4096) is more than server.max_header_bytes (2048)",
            "echo.toml:5:19: server.max_connections must be between 1 and 1000000, not 0",
            "echo.toml:6:21: server.body_timeout_secs must be between 1 and 3600, not 0",
            "echo.toml:7:29: server.max_template_output_bytes must be between 1 and 1073741824, not 0",
            "echo.toml:10:19: admin.rate_per_client must be between 0 and 1000000000, not -1",
        ],
    );
}

/// Connections over `max_connections` get 503 with `Retry-After` and are
/// closed; once one closes, a new one is served.
#[test]
fn connections_over_the_limit_get_503_with_retry_after() {
    let gw = from_file(
        r#"
[server]
max_connections = 3

[[endpoints]]
verb = "GET"
path = "/x"
response = { code = 200, body = "x" }
"#,
    );
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", gw.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let resp = raw_request(gw.port, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(resp.contains("Retry-After: 1\r\n"), "{resp}");
    assert!(resp.contains("Connection: close\r\n"), "{resp}");
    assert!(
        resp.contains(
            "the listener holds its limit of 3 open connections (server.max_connections)"
        ),
        "{resp}"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = raw_request(
            gw.port,
            "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        if resp.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {resp}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A request body that stops arriving is answered 408 after
/// `body_timeout_secs` without a byte, naming the setting.
#[test]
fn a_body_that_stops_arriving_is_408() {
    let gw = from_file(
        r#"
[server]
body_timeout_secs = 1

[[endpoints]]
verb = "POST"
path = "/p"
match = { body = { contains = "yes" } }
response = { code = 200, body = "p" }
"#,
    );
    let mut conn = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    conn.write_all(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nyes, and")
        .unwrap();
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    let resp = String::from_utf8_lossy(&out);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(
        resp.contains("the request body stopped arriving (server.body_timeout_secs)"),
        "{resp}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    // The whole body in time is served.
    let ok = raw_request(
        gw.port,
        "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nyes",
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

/// `max_endpoints`: config files over it are refused at the endpoint that
/// passes it; an admin create over it is 507, and a delete makes room.
#[tokio::test]
async fn the_endpoint_limit_is_507_for_creates_and_an_error_in_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("echo.toml");
    let endpoint = |p: &str| {
        format!("\n[[endpoints]]\nverb = \"GET\"\npath = \"{p}\"\nresponse = {{ code = 200 }}\n")
    };
    std::fs::write(
        &file,
        format!(
            "[server]\nmax_endpoints = 2\n{}{}{}",
            endpoint("/a"),
            endpoint("/b"),
            endpoint("/c")
        ),
    )
    .unwrap();
    let (code, stderr) = validate(&file);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:14:1: this is endpoint 3 of the config files, over server.max_endpoints (2)",
            file.display()
        )),
        "{stderr}"
    );

    let gw = from_file(&format!("[server]\nmax_endpoints = 2\n{}", endpoint("/a")));
    let (status, created) = post(&gw, &endpoint_doc("GET", "/b", 200, "b")).await;
    assert_eq!(status, 201, "{created}");
    let (status, body) = post(&gw, &endpoint_doc("GET", "/c", 200, "c")).await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["errors"][0]["code"], "endpoint_limit", "{body}");
    assert_eq!(
        body["errors"][0]["detail"],
        "the gateway holds its limit of 2 endpoints (server.max_endpoints); delete some or raise the limit"
    );
    let id = created["data"]["id"].as_str().expect("id").to_string();
    let (status, _) = send(
        &gw,
        reqwest::Method::DELETE,
        &format!("/endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = post(&gw, &endpoint_doc("GET", "/c", 200, "c")).await;
    assert_eq!(status, 201, "{body}");
}

/// A template that renders more than `max_template_output_bytes` is a 500
/// that names the setting; a smaller one is served.
#[test]
fn template_output_over_the_limit_is_a_500_naming_it() {
    let gw = from_file(
        r#"
[server]
max_template_output_bytes = 1000

[[endpoints]]
verb = "GET"
path = "/big"
response = { code = 200, template = "{% for i in range(100) %}0123456789abcdef{% endfor %}" }

[[endpoints]]
verb = "GET"
path = "/small"
response = { code = 200, template = "{% for i in range(10) %}0123456789abcdef{% endfor %}" }
"#,
    );
    let resp = raw_request(
        gw.port,
        "GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 500"), "{resp}");
    assert!(
        resp.contains(
            "the rendered body is larger than 1000 bytes (server.max_template_output_bytes)"
        ),
        "{resp}"
    );
    let resp = raw_request(
        gw.port,
        "GET /small HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with(&"0123456789abcdef".repeat(10)), "{resp}");
}

/// A regular expression that compiles past `max_regex_bytes` is refused
/// where it is written: file:line:col in a file, a JSON pointer in the
/// admin API.
#[tokio::test]
async fn regexes_over_the_size_limit_are_refused_where_written() {
    let too_big = r"/a(\w{50}){20}";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("echo.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nmax_regex_bytes = 4096\n\n[[endpoints]]\nverb = \"GET\"\npath_regex = '{too_big}'\nresponse = {{ code = 200 }}\n"
        ),
    )
    .unwrap();
    let (code, stderr) = validate(&file);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:6:14: path_regex is not a valid regular expression: it compiles to more than 4096 bytes (server.max_regex_bytes)", file.display())),
        "{stderr}"
    );

    let gw = from_file("[server]\nmax_regex_bytes = 4096\n");
    assert_422(
        &gw,
        serde_json::json!({"verb": "GET", "path_regex": too_big, "response": {"code": 200}}),
        &["/data/attributes/path_regex"],
    )
    .await;
    assert_422(
        &gw,
        serde_json::json!({"verb": "GET", "path": "/q", "match": {"query": {"q": {"regex": too_big}}}, "response": {"code": 200}}),
        &["/data/attributes/match/query/q/regex"],
    )
    .await;
    // A small one is taken.
    let (status, body) = post(
        &gw,
        &doc(
            serde_json::json!({"verb": "GET", "path_regex": "/a[0-9]+", "response": {"code": 200}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// `admin.max_body_bytes` sets the admin body limit: over it is 413.
#[tokio::test]
async fn the_admin_body_limit_is_configurable() {
    let gw = from_file("[admin]\nmax_body_bytes = 2048\n");
    let (status, body) = post(&gw, &endpoint_doc("GET", "/big", 200, &"b".repeat(2100))).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["errors"][0]["code"], "payload_too_large", "{body}");
    let (status, body) = post(&gw, &endpoint_doc("GET", "/small", 200, &"b".repeat(1000))).await;
    assert_eq!(status, 201, "{body}");
}
