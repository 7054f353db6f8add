//! `subnode` as a subprocess, for the tests that run the binary as a user does: a clean
//! environment pointed at a test broker, scratch databases, and long-running commands whose
//! JSON lines are collected.
#![allow(dead_code)]

pub(crate) mod http;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use subnodesync_testkit::WAIT;

pub(crate) const SUBNODE: &str = env!("CARGO_BIN_EXE_subnode");

/// A scratch directory for one test's databases, removed at the end.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("subnode-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch dir");
        Self(dir)
    }

    pub(crate) fn db(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `subnode` with a clean environment pointed at `url`, heartbeats every second.
pub(crate) fn subnode(url: &str, db: &str) -> Command {
    let mut cmd = Command::new(SUBNODE);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SUBNODE_BROKER_URL", url)
        .env("SUBNODE_DB", db)
        .env("SUBNODE_HEARTBEAT_INTERVAL", "1s")
        .env("SUBNODE_RECONNECT_MIN", "100ms")
        .env("SUBNODE_RECONNECT_MAX", "1s")
        .stdin(Stdio::null());
    cmd
}

/// Runs `subnode args...` to completion.
pub(crate) fn run(url: &str, db: &str, args: &[&str]) -> Output {
    subnode(url, db).args(args).output().expect("run subnode")
}

pub(crate) fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A long-running `subnode` (a node or a watch), killed on drop, its stdout collected.
pub(crate) struct Running {
    pub(crate) child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub(crate) fn start(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn subnode");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// A node process named `name` on host `host`; its instance id is returned too.
    pub(crate) fn node(url: &str, name: &str, host: &str) -> (Self, String) {
        Self::node_from(subnode(url, "/nonexistent/unused.db"), name, host)
    }

    /// A node process like [`Running::node`], started from `cmd` (a node's variables set on it).
    pub(crate) fn node_from(mut cmd: Command, name: &str, host: &str) -> (Self, String) {
        cmd.args(["node", name, "--hostname", host]);
        let node = Self::start(cmd);
        let id = format!("{name}-{host}-{}", node.child.id());
        (node, id)
    }

    /// `subnode serve --listen 127.0.0.1:0` with `extra` arguments, once it prints its URL; the
    /// URL is returned too.
    pub(crate) fn serve(url: &str, db: &str, extra: &[&str]) -> (Self, String) {
        Self::serve_with(subnode(url, db), extra)
    }

    /// [`serve`](Self::serve) from a prepared command (more environment, say).
    pub(crate) fn serve_with(mut cmd: Command, extra: &[&str]) -> (Self, String) {
        cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(extra);
        let serve = Self::start(cmd);
        let deadline = Instant::now() + WAIT;
        loop {
            let url = serve.lines.lock().unwrap().iter().find(|l| l.starts_with("http://")).cloned();
            if let Some(url) = url {
                return (serve, url);
            }
            assert!(Instant::now() < deadline, "subnode serve printed no URL within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The JSON lines printed so far.
    pub(crate) fn events(&self) -> Vec<Value> {
        self.lines.lock().unwrap().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Waits for a JSON line for which `pred` holds.
    pub(crate) fn expect(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = self.events().into_iter().find(|v| pred(v)) {
                return v;
            }
            assert!(Instant::now() < deadline, "no {what} within {WAIT:?}; saw:\n{:#?}", self.lines.lock().unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGTERM, then waits: the clean way out for a node or a watch.
    pub(crate) fn stop(mut self) {
        self.signal("-TERM");
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn status_event<'a>(instance: &'a str, to: &str) -> impl Fn(&Value) -> bool + 'a {
    let to = to.to_owned();
    move |v| v["event"] == "status" && v["instance_id"] == instance && v["to"] == to.as_str()
}

/// Waits until `subnode nodes` lists `instance` as online.
pub(crate) fn wait_online(url: &str, db: &str, instance: &str) -> Value {
    wait_status(url, db, instance, "online")
}

/// Waits until `subnode nodes` lists `instance` with `status`.
pub(crate) fn wait_status(url: &str, db: &str, instance: &str, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = run(url, db, &["nodes", "--json"]);
        let list = json(&out);
        if let Some(i) = list.as_array().into_iter().flatten().find(|i| i["instance_id"] == instance) {
            if i["status"] == status {
                return i.clone();
            }
        }
        assert!(Instant::now() < deadline, "{instance} not {status} within {WAIT:?}: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
