//! The embassy adapter on the host, against a real mosquitto: embassy's own executor on a std
//! thread, embassy-time's std driver, and a real TCP socket (async-io) behind `embedded-io-async`.
//! The engine is a plain MQTT client on tokio (tests/support).

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration as StdDuration;

use async_io::Async;
use embassy_executor::Executor;
use embassy_time::{Duration, Instant};
use embedded_io_adapters::futures_03::FromFutures;
use serde_json::json;
use subnodesync_core::Writer;
use subnodesync_core::{Command, Config, Metric, Metrics, Node, Outcome, RawJson, Rejection};
use subnodesync_embassy::{run, Handler, Handlers, Notice, Resources, Sampler, Stopped};
use subnodesync_testkit::{base, Broker, Engine, WAIT};

/// `double`: `{"n": N}` → data `{"n": 2N}`.
struct Double;

impl Handler for Double {
    fn handle<'s>(&'s mut self, command: &Command<'_>, scratch: &'s mut [u8]) -> Outcome<'s> {
        let Some(n) = command.parameters.get("n").and_then(|v| v.deserialize::<i64>()) else {
            return Outcome::fail("parameter `n` must be an integer");
        };
        let mut w = Writer::new(scratch);
        w.raw(b"{\"n\":");
        w.i64(n.saturating_mul(2));
        w.raw(b"}");
        match w.finish() {
            Ok(len) => Outcome::ok("doubled").with_data(scratch.get(..len).unwrap_or_default()),
            Err(_) => Outcome::fail("no room for the result"),
        }
    }
}

/// Heartbeats carry the uptime as a custom metric, as a device would.
struct Uptime {
    started: Instant,
    custom: [(&'static str, Metric<'static>); 1],
}

impl Sampler for Uptime {
    fn sample(&mut self) -> Metrics<'_> {
        let uptime = i64::try_from(self.started.elapsed().as_secs()).unwrap_or(i64::MAX);
        self.custom = [("uptime_s", Metric::Int(uptime))];
        Metrics { threads: 1, custom: &self.custom, ..Metrics::default() }
    }
}

/// The node as a device would run it, but over a host TCP socket.
#[embassy_executor::task(pool_size = 2)]
async fn node_task(port: u16, name: &'static str, result: Arc<Mutex<Option<Stopped>>>) {
    let mut double = Double;
    // A device setting from the desired state: an LED, on or off.
    let mut led = |value: RawJson<'_>| match value.deserialize::<bool>() {
        Some(_) => Ok(()),
        None => Err(Rejection::new("must be true or false")),
    };
    let mut handlers: Handlers<'_, 2> = Handlers::new();
    handlers.add("double", &mut double).expect("room for a handler");
    handlers.add_setting("led", &mut led).expect("room for a setting");
    let commands = handlers.names();
    let config = Config {
        heartbeat_interval: Duration::from_secs(1),
        keep_alive: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(1),
        commands: &commands,
        ..Config::new(name, "host", std::process::id())
    };
    let mut resources: Resources = Resources::new();
    let (buffers, scratch) = resources.split();
    let mut node: Node<'_> = Node::new(config, buffers, 7, Instant::now()).expect("a valid node");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut connect = || async move { Async::<TcpStream>::connect(addr).await.map(FromFutures::new) };
    let mut sampler = Uptime { started: Instant::now(), custom: [("uptime_s", Metric::Int(0))] };
    let notify = |notice: Notice<'_, std::io::Error>| eprintln!("{name}: {notice:?}");
    let stopped = run(&mut node, &mut connect, &mut handlers, &mut sampler, scratch, notify).await;
    *result.lock().expect("result lock") = Some(stopped);
}

/// Runs the node on an embassy executor on its own thread; the thread ends with `run`.
fn start_node(port: u16, name: &'static str) -> JoinHandle<Option<Stopped>> {
    std::thread::spawn(move || {
        let result = Arc::new(Mutex::new(None));
        let executor: &'static mut Executor = Box::leak(Box::new(Executor::new()));
        let for_task = result.clone();
        executor.run_until(
            |spawner| spawner.spawn(node_task(port, name, for_task).expect("a free task slot")),
            || result.lock().expect("result lock").is_some(),
        );
        let stopped = result.lock().expect("result lock").take();
        stopped
    })
}

/// Waits for the node's thread to end and returns why `run` did.
async fn stopped(thread: JoinHandle<Option<Stopped>>) -> Option<Stopped> {
    let deadline = std::time::Instant::now() + WAIT;
    while !thread.is_finished() {
        assert!(std::time::Instant::now() < deadline, "run did not return within {WAIT:?}");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    thread.join().expect("the node thread panicked")
}

fn instance_base(name: &str) -> String {
    base(name, &format!("{name}-host-{}", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_heartbeats_answers_a_command_and_rejoins_after_a_broker_restart() {
    let name = "embassy-restart";
    let mut broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let node = start_node(broker.port(), name);
    let base = instance_base(name);

    let register = engine.expect_on(&format!("{base}/register")).await.json();
    assert_eq!(register["node_name"], name);
    assert_eq!(register["capabilities"], json!(["mqtt_control", "heartbeat"]));
    engine.expect_status(&base, "online").await;
    let heartbeat = engine.expect_on(&format!("{base}/heartbeat")).await.json();
    assert!(heartbeat["metrics"]["uptime_s"].is_i64(), "no uptime metric in {heartbeat}");
    assert_eq!(heartbeat["metrics"]["process_goroutine_count"], 1);

    let result = engine.ask(&base, "r-1", "double", json!({ "n": 21 })).await;
    assert_eq!((result["success"].clone(), result["data"].clone()), (json!(true), json!({ "n": 42 })));

    // The broker forgets everything: the node must reconnect, resubscribe and register again.
    broker.restart();
    let register = engine.expect_on(&format!("{base}/register")).await.json();
    assert_eq!(register["instance_id"], format!("{name}-host-{}", std::process::id()));
    engine.expect_status(&base, "online").await;
    assert_eq!(engine.ask(&base, "r-2", "double", json!({ "n": 2 })).await["data"], json!({ "n": 4 }));
    let result = engine.ask(&base, "r-3", "double", json!({ "n": "x" })).await;
    assert_eq!(
        (result["success"].clone(), result["message"].clone()),
        (json!(false), json!("parameter `n` must be an integer"))
    );

    assert_eq!(engine.ask(&base, "r-stop", "stop", json!({})).await["message"], "stopping");
    engine.expect_status(&base, "offline").await;
    assert_eq!(stopped(node).await, Some(Stopped::StopRequested));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_trying_until_a_broker_appears_and_restart_ends_run() {
    let name = "embassy-late";
    // Nobody listens on the port yet: the node must back off and retry, not give up.
    let mut broker = Broker::start();
    let port = broker.port();
    broker.kill();
    let node = start_node(port, name);
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    broker.restart();
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let base = instance_base(name);
    engine.expect_status(&base, "online").await;

    assert_eq!(engine.ask(&base, "r-restart", "restart", json!({})).await["message"], "restarting");
    engine.expect_status(&base, "offline").await;
    assert_eq!(stopped(node).await, Some(Stopped::RestartRequested));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_state_set_before_the_device_starts_is_applied_and_reported_from_its_table() {
    let name = "embassy-desired";
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let doc = json!({"version": 3, "settings": {"led": true, "speed": 3, "heartbeat_interval": 5}});
    engine.publish_retained(&format!("subnodesync/{name}/desired"), doc.to_string()).await;
    let node = start_node(broker.port(), name);
    let base = instance_base(name);
    let reported = format!("{base}/reported");

    let r = engine.expect_on(&reported).await.json();
    assert_eq!(r["version"], 3);
    assert_eq!(r["settings"], json!({"led": true, "heartbeat_interval": 5}));
    assert_eq!(r["rejected"], json!({"speed": "unknown setting"}));
    let status = engine.ask(&base, "r-status", "status", json!({})).await;
    assert_eq!(status["data"]["heartbeat_interval"], 5);

    let doc = json!({"version": 4, "settings": {"led": "on"}});
    engine.publish_retained(&format!("{base}/desired"), doc.to_string()).await;
    let r = engine.expect_on(&reported).await.json();
    assert_eq!((r["version"].clone(), r["settings"].clone()), (json!(4), json!({"heartbeat_interval": 5})));
    assert_eq!(r["rejected"], json!({"led": "must be true or false", "speed": "unknown setting"}));

    assert_eq!(engine.ask(&base, "r-stop", "stop", json!({})).await["message"], "stopping");
    let cleared = engine.expect_on(&reported).await;
    assert!(cleared.payload.is_empty(), "the report was not deleted: {}", cleared.text());
    assert_eq!(stopped(node).await, Some(Stopped::StopRequested));
}
