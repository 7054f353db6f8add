//! Test fixtures shared by every crate's integration tests: a real mosquitto on a free loopback
//! port, started and killed by the test (`subnodesync-fixtures`' launcher, behind an API that
//! fails the test instead of returning errors), and an engine made of a plain MQTT client
//! (rumqttc) that reads only what goes over MQTT; and the broker scenarios every adapter must
//! pass, with the example nodes' `echo` and `count` they exercise.

pub mod amqtt;
pub mod proxy;
pub mod scenarios;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use subnodesync_fixtures::{Mosquitto, MosquittoOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long any single expectation may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

static UNIQUE: AtomicU32 = AtomicU32::new(0);

fn unique() -> u32 {
    UNIQUE.fetch_add(1, Ordering::Relaxed)
}

/// Writes a mosquitto password file with `users` (name, password) into `dir`; returns its path.
pub fn password_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("passwd");
    std::fs::write(&path, "").expect("create the password file");
    let passwd = Mosquitto::passwd_binary().unwrap_or_else(|e| panic!("{e}"));
    for (user, password) in users {
        let status = Command::new(&passwd)
            .arg("-b")
            .arg(&path)
            .arg(user)
            .arg(password)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("run mosquitto_passwd");
        assert!(status.success(), "mosquitto_passwd failed for {user}");
    }
    path
}

/// A mosquitto process listening on 127.0.0.1 (`subnodesync-fixtures`' [`Mosquitto`]), killed on
/// drop; every failure fails the test. A missing broker fails the suite, never skips it.
#[derive(Debug)]
pub struct Broker(Mosquitto);

impl Broker {
    /// Starts a broker on a free port that lets anyone in.
    pub fn start() -> Self {
        Self::start_with(|_| "allow_anonymous true\n".to_owned())
    }

    /// Starts a broker on a free port whose configuration, after its `listener` line, is what
    /// `setup` returns; `setup` gets the broker's own directory to write files (passwords,
    /// ACLs, certificates) into.
    pub fn start_with(setup: impl FnOnce(&Path) -> String) -> Self {
        let options = MosquittoOptions { config: String::new(), ..MosquittoOptions::default() };
        Self(Mosquitto::start_in(options, setup).unwrap_or_else(|e| panic!("{e}")))
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.0.port()
    }

    /// The broker's directory (its configuration, log and whatever `setup` wrote).
    pub fn dir(&self) -> &Path {
        self.0.dir()
    }

    /// `mqtt://127.0.0.1:<port>`, as `SUBNODE_BROKER_URL` takes it.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// Kills the broker at once (SIGKILL): connections drop without any goodbye.
    pub fn kill(&mut self) {
        self.0.kill();
    }

    /// Starts the broker again on the same port (it lost all state: persistence is off).
    pub fn restart(&mut self) {
        self.0.restart().unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A broker process a test can kill and start again on the same ports.
pub trait RestartableBroker {
    /// The loopback port of its plain MQTT listener (the engine's).
    fn port(&self) -> u16;
    /// Kills the broker at once (SIGKILL): connections drop without any goodbye.
    fn kill(&mut self);
    /// Starts the broker again on the same ports (it lost all state).
    fn restart(&mut self);
}

impl RestartableBroker for Broker {
    fn port(&self) -> u16 {
        Broker::port(self)
    }

    fn kill(&mut self) {
        Broker::kill(self);
    }

    fn restart(&mut self) {
        Broker::restart(self);
    }
}

/// A loopback port nobody listened on a moment ago.
pub fn free_port() -> u16 {
    subnodesync_fixtures::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// A message the engine saw.
#[derive(Debug, Clone)]
pub struct Msg {
    /// The topic it was published on.
    pub topic: String,
    /// Its payload, as sent.
    pub payload: Vec<u8>,
    /// Whether the broker delivered it as retained.
    pub retain: bool,
    /// When the engine received it.
    pub at: Instant,
}

impl Msg {
    /// The payload as text; fails the test if it is not UTF-8.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).expect("payload is UTF-8")
    }

    /// The payload as JSON; fails the test if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("payload on {} is not JSON ({e}): {}", self.topic, self.text()))
    }
}

enum Seen {
    Publish(Msg),
    SubAck,
}

/// The management engine's side: subscribes to a filter (again after every reconnect) and
/// publishes commands.
pub struct Engine {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
    /// Everything seen so far, for failure messages.
    log: Vec<String>,
}

impl Engine {
    /// Connects to the broker on `port` and subscribes to `filters`, waiting for the SUBACK.
    pub async fn connect(port: u16, filters: &[&str]) -> Self {
        Self::connect_as(port, None, None, filters).await
    }

    /// [`connect`](Self::connect) with a client id (default: a unique `engine-...`) and a
    /// username and password.
    pub async fn connect_as(
        port: u16,
        client_id: Option<&str>,
        credentials: Option<(&str, &str)>,
        filters: &[&str],
    ) -> Self {
        let id = client_id.map_or_else(|| format!("engine-{}-{}", std::process::id(), unique()), str::to_owned);
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        options.set_keep_alive(Duration::from_secs(5));
        // Anything MQTT can carry, either way: tests publish hostile input as any client could.
        options.set_max_packet_size(268_435_455, 268_435_455);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let subscriptions = filters.len();
        let filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
        let subscriber = client.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // One SUBSCRIBE per filter, in order: retained messages arrive in that order.
                        for filter in &filters {
                            let _ = subscriber.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = tx.send(Seen::SubAck);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let msg = Msg {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            at: Instant::now(),
                        };
                        let _ = tx.send(Seen::Publish(msg));
                    }
                    Ok(_) => {}
                    // The broker is gone (a test killed it): try again shortly, like any client.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let mut engine = Self { client, rx, task, log: Vec::new() };
        engine.wait_subacks(subscriptions).await;
        engine
    }

    /// Every filter has its own SUBSCRIBE; the last SUBACK means all are in place.
    async fn wait_subacks(&mut self, n: usize) {
        let mut acks = 0;
        let deadline = tokio::time::Instant::now() + WAIT;
        while acks < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Seen::SubAck)) => acks += 1,
                Ok(Some(Seen::Publish(m))) => self.note(&m),
                _ => panic!("engine: no SUBACK within {WAIT:?}"),
            }
        }
    }

    fn note(&mut self, m: &Msg) {
        let text = String::from_utf8_lossy(&m.payload);
        let short: String = text.chars().take(160).collect();
        self.log.push(format!("{} (retain {}): {short}", m.topic, m.retain));
    }

    /// The next message for which `pred` holds; others are skipped (and remembered for the
    /// failure message). Fails the test after [`WAIT`].
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        self.expect_within(WAIT, what, pred).await
    }

    /// [`expect`](Self::expect) with an explicit bound.
    pub async fn expect_within(&mut self, bound: Duration, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Seen::Publish(m))) => {
                    self.note(&m);
                    if pred(&m) {
                        return m;
                    }
                }
                Ok(Some(Seen::SubAck)) => {}
                Ok(None) => panic!("engine stopped while waiting for {what}"),
                Err(_) => {
                    let seen = self.log.iter().rev().take(30).rev().cloned().collect::<Vec<_>>().join("\n  ");
                    panic!("no {what} within {bound:?}; the engine saw (last 30):\n  {seen}");
                }
            }
        }
    }

    /// The next message on exactly `topic`.
    pub async fn expect_on(&mut self, topic: &str) -> Msg {
        let what = format!("message on {topic}");
        self.expect(&what, |m| m.topic == topic).await
    }

    /// The next status message on `base/status` saying `status`.
    pub async fn expect_status(&mut self, base: &str, status: &str) -> Msg {
        let topic = format!("{base}/status");
        let what = format!("status {status:?} on {topic}");
        self.expect(&what, |m| m.topic == topic && m.json()["status"] == status).await
    }

    /// Publishes a control message (QoS 1, not retained) on `topic`.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.into()).await.expect("engine publish");
    }

    /// Publishes a retained message (QoS 1) on `topic`.
    pub async fn publish_retained(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, QoS::AtLeastOnce, true, payload.into()).await.expect("engine publish");
    }

    /// Sends `command` with `parameters` to the instance at `base` as `request_id`.
    pub async fn command(&self, base: &str, request_id: &str, command: &str, parameters: Value) {
        let payload = serde_json::json!({
            "command": command,
            "timestamp": "2024-01-01T12:00:00Z",
            "request_id": request_id,
            "parameters": parameters,
        });
        self.publish(&format!("{base}/control"), payload.to_string()).await;
    }

    /// Sends `command` as [`command`](Self::command) does and waits for its final result.
    pub async fn ask(&mut self, base: &str, request_id: &str, command: &str, parameters: Value) -> Value {
        self.command(base, request_id, command, parameters).await;
        self.result(base, request_id).await
    }

    /// The final result (`state` `done`) for `request_id` on `base/result`.
    pub async fn result(&mut self, base: &str, request_id: &str) -> Value {
        let topic = format!("{base}/result");
        let what = format!("final result for {request_id} on {topic}");
        let msg = self
            .expect(&what, |m| m.topic == topic && m.json()["request_id"] == request_id && m.json()["state"] == "done")
            .await;
        msg.json()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `{prefix}/{node_name}/{instance_id}` for the default prefix.
pub fn base(node_name: &str, instance_id: &str) -> String {
    format!("subnodesync/{node_name}/{instance_id}")
}

/// A result message's `success` and `message`, to compare with what a test expects.
pub fn outcome(result: &Value) -> (Option<bool>, Option<&str>) {
    (result["success"].as_bool(), result["message"].as_str())
}

/// Whether `s` is an RFC 3339 UTC timestamp with second precision from this century.
pub fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() == 20
        && s.starts_with("20")
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'Z'
}

/// Asserts that the keys appear in `json_text` in this order.
pub fn assert_key_order(json_text: &str, keys: &[&str]) {
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| json_text.find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("no key {k:?} in {json_text}")))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "keys out of order {keys:?} in {json_text}");
}

/// Fails if a new subscriber to `topic` gets a retained message. A retained message is sent
/// before anything published after the subscription, so the first message on `topic` must be a
/// plain (neither retained nor empty) probe published after the SUBACK: that leaves the retained
/// store alone.
pub async fn assert_no_retained(port: u16, topic: &str) {
    let mut newcomer = Engine::connect(port, &[topic]).await;
    newcomer.publish(topic, "probe").await;
    let first = newcomer.expect_on(topic).await;
    assert_eq!((first.text(), first.retain), ("probe", false), "a message is still retained on {topic}: {first:?}");
}
