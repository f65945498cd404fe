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
