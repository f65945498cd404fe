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
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_echo-gateway"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:2:23: server.header_timeout_secs must be between 1 and 3600, not 0",
            file.display()
        )),
        "{stderr}"
    );
}
