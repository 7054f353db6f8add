//! An example node as a process: started with its settings in the environment, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use subnodesync_testkit::{Broker, Engine, WAIT};

/// A running example node, killed on drop; its log is printed if the test failed.
pub(crate) struct NodeProcess {
    /// The process.
    pub(crate) child: Child,
    /// The example's name, for messages.
    example: String,
    log: PathBuf,
    /// `{prefix}/{node_name}/{instance_id}`.
    pub(crate) base: String,
}

impl NodeProcess {
    /// Starts the example binary `bin` as `name` on `broker`, configured only by the environment
    /// (each example reads the variables it knows), and waits until the engine sees it online.
    pub(crate) async fn start(bin: &str, broker: &Broker, engine: &mut Engine, name: &str) -> Self {
        let example = Path::new(bin).file_name().map_or_else(|| bin.to_owned(), |f| f.to_string_lossy().into_owned());
        let log = std::env::temp_dir().join(format!("{example}-{name}-{}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).expect("create the node's log file");
        let child = Command::new(bin)
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
            .unwrap_or_else(|e| panic!("spawn {example}: {e}"));
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
        Self { child, example, log, base }
    }

    /// Sends a signal with the system's `kill`.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Waits for the process to exit.
    pub(crate) async fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the example") {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit within {WAIT:?}", self.example);
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
            eprintln!("--- {} log ({}) ---\n{log}", self.example, self.log.display());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
