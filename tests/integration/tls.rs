//! HTTP/2 (h2c and h2 through ALPN) and TLS termination with certificates made in the test.

use std::path::Path;
use std::time::Duration;

use crate::harness::{Authward, Upstream, eventually};

/// A self-signed certificate for `localhost`, written as PEM; returns the certificate's PEM.
fn make_cert(dir: &Path, stem: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    cert.pem()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_a_configured_ca() {
    let certs = tempfile::tempdir().unwrap();
    make_cert(certs.path(), "upstream");
    let pem_cert = std::fs::read(certs.path().join("upstream.crt")).unwrap();
    let pem_key = std::fs::read(certs.path().join("upstream.key")).unwrap();
    use rustls_pki_types::pem::PemObject;
    let chain = vec![rustls_pki_types::CertificateDer::from_pem_slice(&pem_cert).unwrap()];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&pem_key).unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let up = Upstream::start_with("tls", Some(std::sync::Arc::new(server))).await;
    let url = format!("https://localhost:{}", up.addr.port());

    // Trusted through `upstream.ca`: forwarded, over h2 negotiated by ALPN.
    let aw = Authward::start(&format!(
        "listen:\n  http: [127.0.0.1:{{PORT}}]\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\nupstream:\n  url: {url}\n  ca: {}/upstream.crt\n",
        certs.path().display()
    ));
    let r = reqwest::get(aw.url("/echo")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "tls");
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["version"], "HTTP/2.0", "h2 to the upstream through ALPN");
    drop(aw);

    // Without the CA the certificate is not trusted: 502, never a plaintext fallback.
    let aw = Authward::start(&format!(
        "listen:\n  http: [127.0.0.1:{{PORT}}]\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\nupstream:\n  url: {url}\n"
    ));
    let r = reqwest::get(aw.url("/echo")).await.unwrap();
    assert_eq!(r.status(), 502);
}

fn tls_client(ca_pem: &str, h2: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let mut b = reqwest::Client::builder()
        .add_root_certificate(ca)
        .use_rustls_tls();
    if !h2 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(&format!(
        "listen:\n  http: [127.0.0.1:{{PORT}}]\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\nupstream:\n  url: {}\n",
        up.url()
    ));
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = c.post(aw.url("/echo")).body("over h2c").send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["body"], "over h2c");
    assert_eq!(echo["version"], "HTTP/1.1", "the upstream hop is HTTP/1.1");
    assert_eq!(
        crate::harness::echoed_headers(&echo, "host"),
        [up.addr.to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_h2_and_http1_and_certificate_reload() {
    let up = Upstream::start("a").await;
    let certs = tempfile::tempdir().unwrap();
    let first = make_cert(certs.path(), "server");
    let aw = Authward::start(&format!(
        "listen:\n  http: []\n  https: [127.0.0.1:{{PORT}}]\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\ntls:\n  cert: {d}/server.crt\n  key: {d}/server.key\nupstream:\n  url: {u}\n",
        d = certs.path().display(),
        u = up.url()
    ));
    let url = format!("https://localhost:{}/echo", aw.port);
    let r = tls_client(&first, true).get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "h2 through ALPN");
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        crate::harness::echoed_headers(&echo, "x-forwarded-proto"),
        ["https"]
    );
    let r = tls_client(&first, false).get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);

    // A new certificate on disk is served after a reload (SIGHUP); the old one is no longer trusted by the new client.
    let second = make_cert(certs.path(), "next");
    std::fs::rename(certs.path().join("next.crt"), certs.path().join("server.crt")).unwrap();
    std::fs::rename(certs.path().join("next.key"), certs.path().join("server.key")).unwrap();
    aw.signal("HUP");
    let swapped = eventually(Duration::from_secs(10), async || {
        tls_client(&second, true).get(&url).send().await.is_ok()
    })
    .await;
    assert!(swapped, "the reloaded certificate is served: {}", aw.logs());
    assert!(tls_client(&first, true).get(&url).send().await.is_err());
}
