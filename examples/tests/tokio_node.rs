//! The `tokio_node` example as a process, against a real mosquitto: what an operator sees when
//! it is killed, terminated, stopped or restarted.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use subnodesync_testkit::{Broker, Engine, WAIT};

/// A running `tokio_node`, killed on drop; its log is printed if the test failed.
struct NodeProcess {
    child: Child,
    log: std::path::PathBuf,
    base: String,
}

impl NodeProcess {
    /// Starts `tokio_node` as `name` on `broker`, configured only by the environment, and waits
    /// until the engine sees it online.
    async fn start(broker: &Broker, engine: &mut Engine, name: &str) -> Self {
        let log = std::env::temp_dir().join(format!("tokio_node-{name}-{}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).expect("create the node's log file");
        let child = Command::new(env!("CARGO_BIN_EXE_tokio_node"))
            .env_clear()
            .env("SUBNODE_BROKER_URL", broker.url())
            .env("SUBNODE_NODE_NAME", name)
            .env("SUBNODE_HEARTBEAT_INTERVAL", "1s")
            .env("SUBNODE_KEEPALIVE", "2")
            .env("SUBNODE_RECONNECT_MIN", "100ms")
            .env("SUBNODE_RECONNECT_MAX", "1s")
            .env("SUBNODE_LOG", "debug")
            .env("SUBNODE_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn tokio_node");
        let prefix = format!("subnodesync/{name}/");
        let pid = child.id();
        let register = engine
            .expect("the example's register message", |m| {
                m.topic.starts_with(&prefix)
                    && m.topic.ends_with("/register")
                    && !m.payload.is_empty()
                    && m.json()["pid"] == pid
            })
            .await;
        let base = register.topic.trim_end_matches("/register").to_owned();
        engine.expect_status(&base, "online").await;
        Self { child, log, base }
    }

    /// Sends a signal with the system's `kill`.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Waits for the process to exit.
    async fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for tokio_node") {
                return status;
            }
            assert!(Instant::now() < deadline, "tokio_node did not exit within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- tokio_node log ({}) ---\n{log}", self.log.display());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_process_gives_status_lost_through_the_will() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let mut node = NodeProcess::start(&broker, &mut engine, "kill9").await;
    node.signal("KILL");
    node.exit().await;
    let lost = engine.expect_status(&node.base, "lost").await.json();
    assert_eq!(lost["instance_id"].as_str(), node.base.rsplit('/').next());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_with_status_offline_and_exit_0() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let mut node = NodeProcess::start(&broker, &mut engine, "term").await;
    node.signal("TERM");
    engine.expect_status(&node.base, "offline").await;
    let register = format!("{}/register", node.base);
    engine.expect("the cleared register", |m| m.topic == register && m.payload.is_empty()).await;
    assert!(node.exit().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_command_exits_0_and_custom_commands_work_until_then() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let mut node = NodeProcess::start(&broker, &mut engine, "stopper").await;
    let base = node.base.clone();

    engine.command(&base, "r-echo", "echo", json!({ "text": "hi" })).await;
    assert_eq!(engine.result(&base, "r-echo").await["data"], json!({ "text": "hi" }));
    for n in 1..=2 {
        let id = format!("r-count-{n}");
        engine.command(&base, &id, "count", json!({})).await;
        assert_eq!(engine.result(&base, &id).await["data"], json!({ "count": n }));
    }

    engine.command(&base, "r-stop", "stop", json!({})).await;
    assert_eq!(engine.result(&base, "r-stop").await["message"], "stopping");
    engine.expect_status(&base, "offline").await;
    assert!(node.exit().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restart_command_re_executes_the_process() {
    let broker = Broker::start();
    let mut engine = Engine::connect(broker.port(), &["subnodesync/#"]).await;
    let mut node = NodeProcess::start(&broker, &mut engine, "phoenix").await;
    let base = node.base.clone();

    engine.command(&base, "r-count", "count", json!({})).await;
    assert_eq!(engine.result(&base, "r-count").await["data"], json!({ "count": 1 }));
    engine.command(&base, "r-restart", "restart", json!({})).await;
    assert_eq!(engine.result(&base, "r-restart").await["message"], "restarting");
    engine.expect_status(&base, "offline").await;
    // exec keeps the pid, so the instance id and topics are the same; the process is new.
    engine.expect_status(&base, "online").await;
    assert!(node.child.try_wait().expect("wait").is_none(), "the process exited instead of re-executing");
    engine.command(&base, "r-count-again", "count", json!({})).await;
    assert_eq!(engine.result(&base, "r-count-again").await["data"], json!({ "count": 1 }), "state survived");

    node.signal("TERM");
    engine.expect_status(&base, "offline").await;
    assert!(node.exit().await.success());
}
