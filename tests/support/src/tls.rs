//! `mqtts://` scenarios against a real mosquitto with a TLS listener, using a CA, server and
//! client certificates made by the test (rcgen). The engine connects over a second, plain
//! listener. Each is generic over the runtime adapter, like [`crate::scenarios`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use subnodesync_host::{DisconnectReason, LifecycleEvent, NodeBuilder, NodeHandle, Runtime};
use tokio::sync::broadcast;

use crate::{base, free_port, Broker, Engine, WAIT};

/// PEM files in a broker's directory.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The test CA's certificate: what a client trusts.
    pub ca: PathBuf,
    /// The server certificate, for `localhost` only.
    pub server_cert: PathBuf,
    /// Its private key.
    pub server_key: PathBuf,
    /// A client certificate (CN `tls-client`).
    pub client_cert: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
}

/// A CA, a server certificate for `localhost` only and a client certificate (CN `tls-client`),
/// written as PEM files into `dir`.
pub fn make_pki(dir: &Path) -> Pki {
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write a PEM file");
        path
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "SubNodeSync test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).expect("self-signed CA");
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |names: Vec<String>, common_name: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).expect("signed leaf");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into()], "localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf(vec![], "tls-client", ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: write("ca.pem", ca_cert.pem()),
        server_cert: write("server.pem", server_cert),
        server_key: write("server.key", server_key),
        client_cert: write("client.pem", client_cert),
        client_key: write("client.key", client_key),
    }
}

/// A broker whose own port is a TLS listener (asking for a client certificate if
/// `require_certificate`), plus a plain listener for the engine; its PKI and the plain port.
pub fn tls_broker(require_certificate: bool) -> (Broker, Pki, u16) {
    let plain = free_port();
    let mut pki = None;
    let broker = Broker::start_with(|dir| {
        let made = make_pki(dir);
        let mut config = format!(
            "cafile {}\ncertfile {}\nkeyfile {}\n",
            made.ca.display(),
            made.server_cert.display(),
            made.server_key.display()
        );
        if require_certificate {
            config.push_str("require_certificate true\nuse_identity_as_username true\n");
        }
        config.push_str(&format!("listener {plain} 127.0.0.1\nallow_anonymous true\n"));
        pki = Some(made);
        config
    });
    (broker, pki.expect("the PKI was made"), plain)
}

/// A node on the TLS listener at `host`, trusting the test CA: the suites' node, over TLS.
fn node<R: Runtime>(broker: &Broker, pki: &Pki, host: &str, name: &str) -> NodeBuilder<R> {
    crate::scenarios::suite_node(&format!("mqtts://{host}:{}", broker.port()), name)
        .tls_ca(&pki.ca)
        .hostname("tls-host")
        .reconnect_min(Duration::from_millis(200))
}

/// The first `Connected` or `Disconnected` event, within [`WAIT`].
async fn first_outcome(handle: &NodeHandle, events: &mut broadcast::Receiver<LifecycleEvent>) -> LifecycleEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(e @ (LifecycleEvent::Connected { .. } | LifecycleEvent::Disconnected { .. }))) => return e,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event stream ended: {e}"),
            Err(_) => panic!("{} neither connected nor failed within {WAIT:?}", handle.instance_id()),
        }
    }
}

/// Asserts that the first outcome is a transport failure whose error contains `needle`.
async fn expect_refused(handle: NodeHandle, needle: &str) {
    let mut events = handle.events();
    let outcome = first_outcome(&handle, &mut events).await;
    match &outcome {
        LifecycleEvent::Disconnected { reason: DisconnectReason::Transport, error: Some(error), .. } => {
            assert!(error.contains(needle), "expected {needle:?} in: {error}");
        }
        other => panic!("expected a TLS failure, got: {other}"),
    }
    assert!(!handle.is_connected());
    tokio::time::timeout(WAIT, handle.stop()).await.expect("stop returns");
}

/// Over TLS with a CA made in the test, the node registers, heartbeats, answers and stops cleanly.
pub async fn over_tls_with_a_ca_made_in_the_test_the_node_registers_and_answers_commands<R: Runtime>() {
    let (broker, pki, plain) = tls_broker(false);
    let mut engine = Engine::connect(plain, &["subnodesync/#"]).await;
    let handle = node::<R>(&broker, &pki, "localhost", "secure").start().await.expect("node starts");
    let base = base("secure", handle.instance_id());

    let register = engine.expect_on(&format!("{base}/register")).await;
    assert_eq!(register.json()["instance_id"], handle.instance_id());
    engine.expect_status(&base, "online").await;
    engine.expect_on(&format!("{base}/heartbeat")).await;
    assert_eq!(engine.ask(&base, "r-1", "ping", json!({})).await["message"], "pong");

    // A clean stop over TLS: status offline, register cleared.
    tokio::time::timeout(WAIT, handle.stop()).await.expect("stop returns");
    engine.expect_status(&base, "offline").await;
    assert!(engine.expect_on(&format!("{base}/register")).await.payload.is_empty());
}

/// A server certificate for another name, or from a CA the node does not trust, is refused
/// with an error that says so.
pub async fn a_server_certificate_for_another_name_or_from_an_unknown_ca_is_refused_with_a_clear_error<R: Runtime>() {
    let (broker, pki, _) = tls_broker(false);
    // The certificate is for `localhost`; the URL says 127.0.0.1.
    let handle = node::<R>(&broker, &pki, "127.0.0.1", "wrong-name").start().await.expect("node starts");
    expect_refused(handle, "certificate not valid for name").await;

    // A CA the node does not trust (another one, made the same way).
    let other = std::env::temp_dir().join(format!("subnodesync-other-ca-{}", std::process::id()));
    std::fs::create_dir_all(&other).expect("temp dir");
    let stranger = make_pki(&other);
    let handle = node::<R>(&broker, &pki, "localhost", "stranger").tls_ca(&stranger.ca).start().await.expect("starts");
    expect_refused(handle, "invalid peer certificate").await;
    let _ = std::fs::remove_dir_all(&other);
}

/// A broker that requires a client certificate accepts the node that presents one, and only it.
pub async fn a_broker_that_requires_a_client_certificate_accepts_the_node_that_presents_one<R: Runtime>() {
    let (broker, pki, plain) = tls_broker(true);
    let mut engine = Engine::connect(plain, &["subnodesync/#"]).await;
    let handle = node::<R>(&broker, &pki, "localhost", "client-cert")
        .tls_cert(&pki.client_cert)
        .tls_key(&pki.client_key)
        .start()
        .await
        .expect("node starts");
    let base = base("client-cert", handle.instance_id());
    engine.expect_status(&base, "online").await;
    assert_eq!(engine.ask(&base, "r-1", "ping", json!({})).await["message"], "pong");
    handle.stop().await;

    // Without one, the broker ends the handshake.
    let handle = node::<R>(&broker, &pki, "localhost", "no-client-cert").start().await.expect("node starts");
    let mut events = handle.events();
    let outcome = first_outcome(&handle, &mut events).await;
    assert!(matches!(outcome, LifecycleEvent::Disconnected { .. }), "connected without a client certificate");
    assert!(!handle.is_connected());
    tokio::time::timeout(WAIT, handle.stop()).await.expect("stop returns");
}
