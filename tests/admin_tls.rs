//! TLS on the admin listener: certificate files named in the config, served
//! with rustls; bad files are errors at their place in the config.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A self-signed certificate for `localhost`: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

fn tls_client(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem"))
        .build()
        .expect("client")
}

#[tokio::test]
async fn the_admin_api_serves_tls_from_the_configured_files() {
    let (cert, key) = self_signed();
    let admin = free_port();
    let gw = Gateway::start_with(Options {
        config: Some(format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"secret\"\ntls_cert = \"certs/admin.crt\"\ntls_key = \"certs/admin.key\"\n"
        )),
        files: vec![
            ("certs/admin.crt".into(), cert.clone()),
            ("certs/admin.key".into(), key),
        ],
        args: memory(),
        ..Options::default()
    });
    let https = tls_client(&cert);
    let base = format!("https://localhost:{admin}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        match https
            .get(format!("{base}/endpoints"))
            .bearer_auth("secret")
            .send()
            .await
        {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no TLS admin listener: {e}\n{}", gw.logs()),
        }
    };
    assert_eq!(listed.status().as_u16(), 200);
    let body: Value = listed.json().await.expect("json");
    assert_eq!(body["data"], serde_json::json!([]));

    // A create over TLS is served on the (plain) mock listener.
    let created = https
        .post(format!("{base}/endpoints"))
        .bearer_auth("secret")
        .header("Content-Type", JSONAPI)
        .body(endpoint_doc("GET", "/over-tls", 200, "created over TLS").to_string())
        .send()
        .await
        .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    let served = raw_request(
        gw.port,
        "GET /over-tls HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(served.ends_with("created over TLS"), "{served}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = raw_request(admin, "GET /endpoints HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
    // A client that does not trust the certificate is refused by its own check.
    assert!(client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err());
}

#[test]
fn bad_tls_files_are_errors_at_their_place() {
    let (cert, key) = self_signed();
    let (_, other_key) = self_signed();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("admin.key"), &key).unwrap();
    std::fs::write(dir.path().join("other.key"), &other_key).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a certificate").unwrap();
    let check = |admin: &str, expected: &[&str]| {
        let file = dir.path().join("echo.toml");
        std::fs::write(&file, format!("[admin]\n{admin}")).unwrap();
        let (code, stderr) = validate(&file);
        assert_eq!(
            code,
            Some(if expected.is_empty() { 0 } else { 1 }),
            "{stderr}"
        );
        for e in expected {
            let want = format!("{}:{e}", file.display());
            assert!(stderr.contains(&want), "missing `{want}` in:\n{stderr}");
        }
    };
    let listen = "listen = \"127.0.0.1:9443\"\n";
    check(
        &format!("{listen}tls_cert = \"admin.crt\"\ntls_key = \"admin.key\"\n"),
        &[],
    );
    check(
        &format!("{listen}tls_cert = \"admin.crt\"\n"),
        &["3:12: admin.tls_cert and admin.tls_key go together: give both"],
    );
    check(
        &format!("{listen}tls_cert = \"missing.crt\"\ntls_key = \"admin.key\"\n"),
        &["3:12: admin.tls_cert `missing.crt`: cannot be read ("],
    );
    check(
        &format!("{listen}tls_cert = \"notes.txt\"\ntls_key = \"admin.key\"\n"),
        &["3:12: admin.tls_cert `notes.txt`: holds no PEM certificate"],
    );
    check(
        &format!("{listen}tls_cert = \"admin.crt\"\ntls_key = \"admin.crt\"\n"),
        &["4:11: admin.tls_key `admin.crt`: holds no PEM private key"],
    );
    check(
        &format!("{listen}tls_cert = \"admin.crt\"\ntls_key = \"other.key\"\n"),
        &["4:11: admin.tls_key `other.key`: does not fit the certificate"],
    );
    check(
        "tls_cert = \"admin.crt\"\ntls_key = \"admin.key\"\n",
        &["2:12: admin.tls_cert needs admin.listen: TLS is for an admin listener of its own"],
    );
}
