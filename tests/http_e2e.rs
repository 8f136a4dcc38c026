//! The API's HTTP edge against a real node: deadlines on slow and idle connections.

mod support;

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use support::*;

/// The API's HTTP edge: a client that sends its headers too slowly, or keeps a connection
/// idle after its answer, is cut off; a prompt one is served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_connections_that_dawdle_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let net = net_with(0, |c| {
        c.replace("# header_read_timeout = \"10s\"", "header_read_timeout = \"1s\"")
    })
    .await;
    let api = net.node.listening.api;
    // Closed: the read ends (0 bytes or a reset) well before the 5 s this test allows.
    async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(within, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return got,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => panic!("connection still open after {within:?}: {got:?}"),
            }
        }
    }
    // Slowloris: half a request line, then nothing.
    let mut slow = tokio::net::TcpStream::connect(api).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let answer = closed_within(&mut slow, Duration::from_secs(5)).await;
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "{answer:?}");
    // Keep-alive: one answer, then the idle connection is closed.
    let mut idle = tokio::net::TcpStream::connect(api).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within(&mut idle, Duration::from_secs(5)).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{answer:?}"
    );
    // The node still serves.
    let health = reqwest::get(net.node.url("/health")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // Out of range in node.toml: refused with the field named.
    let cfg = net.dir.path().join("node.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("header_read_timeout = \"1s\"", "header_read_timeout = \"0s\""),
    )
    .unwrap();
    let out = Command::new(EXE)
        .args(["node", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("api.header_read_timeout"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    net.node.stop().await.unwrap();
}

/// With a certificate and key in node.toml the API is served over TLS only: a client
/// that trusts the certificate gets its answer, a plain HTTP request gets none, and a key
/// that others may read is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_over_tls() {
    use std::os::unix::fs::PermissionsExt;
    let pki = tempfile::tempdir().unwrap();
    let signed = rcgen::generate_simple_self_signed(vec!["entente.test".to_string()]).unwrap();
    let (cert, key) = (pki.path().join("api.crt"), pki.path().join("api.key"));
    std::fs::write(&cert, signed.cert.pem()).unwrap();
    std::fs::write(&key, signed.key_pair.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tls_lines = format!("tls_cert = {cert:?}\ntls_key = {key:?}");
    let net = net_with(0, |c| c.replace("# tls_cert = \"api.crt\"", &tls_lines)).await;
    let api = net.node.listening.api;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(signed.cert.pem().as_bytes()).unwrap())
        .resolve("entente.test", api)
        .build()
        .unwrap();
    let url = format!("https://entente.test:{}/health", api.port());
    let health = client.get(&url).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let gateways = client
        .get(format!("https://entente.test:{}/v1/gateways", api.port()))
        .bearer_auth(&net.node.token)
        .send()
        .await
        .unwrap();
    assert_eq!(gateways.status(), StatusCode::OK);
    // Plain HTTP on the TLS port: no answer.
    let plain = reqwest::get(net.node.url("/health")).await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // A client that does not trust the certificate: refused by the client's check.
    let untrusting = reqwest::Client::builder()
        .resolve("entente.test", api)
        .build()
        .unwrap();
    assert!(untrusting.get(&url).send().await.is_err());
    net.node.stop().await.unwrap();
    // A key file others can read: the node does not start.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(EXE)
        .args(["node", "--config"])
        .arg(net.dir.path().join("node.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("api.key"), "{stderr}");
}
