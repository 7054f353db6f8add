//! ALPN on TLS connections: the protocol names of `SUBNODE_TLS_ALPN` reach the broker's TLS
//! server in the handshake, as AWS IoT Core needs (`x-amzn-mqtt-ca`) to serve MQTT on port 443.
//! The "broker" is a rustls server on a loopback port that records what was negotiated.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use subnodesync_testkit::scenarios::suite_node;
use subnodesync_testkit::tls::make_pki;
use subnodesync_testkit::WAIT;
use subnodesync_tokio::rustls::pki_types::pem::PemObject as _;
use subnodesync_tokio::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use subnodesync_tokio::rustls::{ServerConfig, ServerConnection};
use subnodesync_tokio::Tokio;

/// Accepts one TLS connection that offers `protocols` from the server's side, and returns the
/// protocol the handshake chose.
fn negotiate_once(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Option<Vec<u8>>> {
    let (mut tcp, _) = listener.accept()?;
    tcp.set_read_timeout(Some(WAIT))?;
    let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp)?;
    }
    Ok(tls.alpn_protocol().map(<[u8]>::to_vec))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alpn_names_of_subnode_tls_alpn_are_negotiated_with_the_broker() {
    let dir = std::env::temp_dir().join(format!("subnodesync-alpn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the PKI");
    let pki = make_pki(&dir);
    let chain = CertificateDer::pem_file_iter(&pki.server_cert).expect("read").collect::<Result<Vec<_>, _>>();
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).expect("server key");
    let provider = Arc::new(subnodesync_tokio::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain.expect("server chain"), key)
        .expect("server certificate");
    // As AWS IoT Core on port 443: MQTT only for a client that asks for it by ALPN.
    config.alpn_protocols = vec![b"x-amzn-mqtt-ca".to_vec()];
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = std::thread::spawn(move || negotiate_once(listener, Arc::new(config)));

    let ca = pki.ca.display().to_string();
    let node = suite_node::<Tokio>(&format!("mqtts://localhost:{port}"), "alpn")
        .env(move |key| match key {
            "SUBNODE_TLS_ALPN" => Some("x-amzn-mqtt-ca".into()),
            "SUBNODE_TLS_CA" => Some(ca.clone()),
            _ => None,
        })
        .connect_timeout(Duration::from_secs(1))
        .start()
        .await
        .expect("node starts");
    let negotiated = tokio::task::spawn_blocking(move || server.join().expect("server thread"))
        .await
        .expect("join")
        .expect("a TLS handshake");
    assert_eq!(negotiated.as_deref(), Some(&b"x-amzn-mqtt-ca"[..]));
    node.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
