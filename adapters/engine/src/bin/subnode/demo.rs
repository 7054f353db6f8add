//! `subnode demo`: an embedded broker (a child `subnode broker` process, so it can really be
//! restarted), an engine and a few tokio nodes in this process, with the fleet drawn live.

use std::collections::{HashSet, VecDeque};
use std::io::IsTerminal as _;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use subnodesync_engine::console::{Console, ConsoleConfig};
use subnodesync_engine::{Engine, EngineConfig, FleetEvent, Selector, SendRequest, SettingValue, Target};
use subnodesync_tokio::{handler_fn, CommandResult, NodeBuilder, NodeHandle};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::{table, Failure};

/// Options of `subnode demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many nodes to run (the first three share one application name).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=200))]
    nodes: u16,
    /// How long to run before exiting by itself.
    #[arg(long, value_name = "DURATION", value_parser = crate::timeout, default_value = "40s")]
    duration: Duration,
    /// Where the web console listens (a free port if this one is taken); loopback only.
    #[arg(long, value_name = "ADDR", value_parser = subnodesync_engine::console::parse_listen, default_value = subnodesync_engine::console::DEFAULT_LISTEN)]
    listen: std::net::SocketAddr,
}

/// The lines under the table: events and command outcomes, newest last.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<VecDeque<String>>>);

impl Log {
    fn push(&self, line: impl Into<String>) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.push_back(format!("{} {}", table::clock(), line.into()));
        while lines.len() > 12 {
            lines.pop_front();
        }
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

/// Since when the broker restarted, and which instances have registered again since.
type Recovery = (Instant, HashSet<String>);

/// The broker child process on a fixed port.
struct Broker {
    port: u16,
    child: Option<Child>,
}

impl Broker {
    async fn start(port: u16) -> Result<Self, Failure> {
        let mut broker = Self { port, child: None };
        broker.launch().await?;
        Ok(broker)
    }

    async fn launch(&mut self) -> Result<(), Failure> {
        let exe = std::env::current_exe().map_err(|e| Failure(3, format!("cannot find this executable: {e}")))?;
        let child = Command::new(exe)
            .args(["broker", "--port", &self.port.to_string()])
            .env_remove(subnodesync_tokio::config::LOG)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Failure(3, format!("cannot start the broker: {e}")))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(Failure(3, format!("the embedded broker did not listen on port {}", self.port)));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Kills the broker (every connection drops without a goodbye) and starts a fresh one.
    async fn restart(&mut self) -> Result<(), Failure> {
        self.kill().await;
        self.launch().await
    }
}

/// A free loopback port, found by binding port 0.
fn free_port() -> Result<u16, Failure> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Failure(3, format!("no free port: {e}")))
}

async fn start_nodes(url: &str, count: u16) -> Result<Vec<NodeHandle>, Failure> {
    let mut nodes = Vec::new();
    for n in 1..=count {
        let name = if n <= 3 { "shop" } else { "worker" };
        let node = NodeBuilder::new(name)
            .env(|_| None)
            .broker_url(url)
            // One process, one pid: the host name keeps the instance ids apart.
            .hostname(format!("demo{n}"))
            .version(if n % 2 == 0 { "1.1.0" } else { "1.0.0" })
            .heartbeat_interval(Duration::from_secs(2))
            .keep_alive(Duration::from_secs(5))
            .reconnect_min(Duration::from_millis(200))
            .reconnect_max(Duration::from_secs(3))
            .handler(handler_fn("echo", |_ctx, cmd| async move {
                Ok(CommandResult::ok("echoed").with_data(cmd.parameters))
            }))
            .start()
            .await
            .map_err(|e| Failure(3, format!("cannot start a demo node: {e}")))?;
        nodes.push(node);
    }
    Ok(nodes)
}

/// Sends `request` in the background and logs its outcome.
fn send(engine: &Arc<Engine>, log: &Log, what: &str, request: SendRequest) {
    let (engine, log, what) = (engine.clone(), log.clone(), what.to_owned());
    log.push(format!("send          {what}"));
    tokio::spawn(async move {
        match engine.send(&request).await {
            Ok(o) => log.push(format!(
                "outcome       {what}: {}/{} answered, {} ok, {} timed out",
                o.results.len(),
                o.expected.len(),
                o.results.values().filter(|r| r.success).count(),
                o.timed_out.len()
            )),
            Err(e) => log.push(format!("outcome       {what}: {e}")),
        }
    });
}

/// Sets `heartbeat_interval` for every instance of `node` as desired state, in the background,
/// and logs the version published.
fn set_heartbeat_interval(engine: &Arc<Engine>, log: &Log, node: &str, seconds: u64) {
    let (engine, log, node) = (engine.clone(), log.clone(), node.to_owned());
    log.push(format!("config        {node}/* heartbeat_interval={seconds} (desired state, retained)"));
    tokio::spawn(async move {
        let setting = SettingValue::parse("heartbeat_interval", &seconds.to_string());
        let published = match setting {
            Ok(value) => engine.set_desired(&Target::Node(node.clone()), &[("heartbeat_interval".into(), value)]).await,
            Err(e) => return log.push(format!("desired       {e}")),
        };
        match published {
            Ok(p) => log.push(format!("desired       {node}/* at version {}", p.document.version)),
            Err(e) => log.push(format!("desired       {node}/*: {e}")),
        }
    });
}

pub(crate) async fn run(args: DemoArgs) -> Result<(), Failure> {
    let port = free_port()?;
    let url = format!("mqtt://127.0.0.1:{port}");
    let mut broker = Broker::start(port).await?;
    let db = std::env::temp_dir().join(format!("subnode-demo-{}.db", std::process::id()));
    let config = EngineConfig {
        db: db.clone().into(),
        heartbeat_interval: Duration::from_secs(2),
        flush_interval: Duration::from_millis(500),
        ..EngineConfig::from_lookup(&|_| None)?
    }
    .broker_url(&url)?;
    let engine = Arc::new(Engine::start(config).await?);
    let console = start_console(engine.clone(), args.listen).await?;
    let log = Log::default();
    let nodes = start_nodes(&url, args.nodes).await?;
    log.push(format!("started       broker on {url}, engine, {} nodes", nodes.len()));
    eprintln!("console: {}", console.url());

    // Events into the log; after the restart, count who is back.
    let restarted: Arc<Mutex<Option<Recovery>>> = Arc::default();
    let mut events = engine.events();
    let (elog, erestarted, total) = (log.clone(), restarted.clone(), nodes.len());
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if matches!(&event, FleetEvent::Result(r) if !r.is_final()) {
                continue;
            }
            elog.push(event.to_string());
            if let FleetEvent::Registered { instance_id, .. } = &event {
                let mut state = erestarted.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((at, back)) = state.as_mut() {
                    if back.insert(instance_id.clone()) && back.len() == total {
                        elog.push(format!(
                            "recovered     all {total} nodes registered again {:.1} s after the broker restart",
                            at.elapsed().as_secs_f64()
                        ));
                    }
                }
            }
        }
    });

    let terminal = std::io::stdout().is_terminal();
    let screen = Screen { broker: url.clone(), console: console.url(), total: args.duration, terminal };
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut step = 0;
    // SIGTERM as well as Ctrl-C: either way the nodes stop cleanly and the broker child goes too.
    let stop_signal = subnodesync_tokio::shutdown_signal();
    tokio::pin!(stop_signal);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop_signal => {
                log.push("stop signal: stopping");
                break;
            }
        }
        let t = start.elapsed();
        if t >= args.duration {
            break;
        }
        // The script: what happens at which second.
        while let Some(&at) = [4, 7, 10, 14, 18, 23, 26].get(step) {
            if t.as_secs() < at {
                break;
            }
            let everyone = || Target::Select(Selector::default());
            match step {
                0 => send(
                    &engine,
                    &log,
                    "ping to shop/* (broadcast)",
                    SendRequest::new(Target::Node("shop".into()), "ping"),
                ),
                1 => {
                    let first = nodes.first().map(|n| n.instance_id().to_owned()).unwrap_or_default();
                    let mut r =
                        SendRequest::new(Target::Instance { node_name: None, instance_id: first.clone() }, "echo");
                    r.parameters = r#"{"text":"hello"}"#.into();
                    send(&engine, &log, &format!("echo to {first}"), r);
                }
                2 => send(&engine, &log, "status to * (each instance)", SendRequest::new(everyone(), "status")),
                3 => {
                    log.push("restart       killing the broker and starting a new one on the same port");
                    *restarted.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), HashSet::new()));
                    broker.restart().await?;
                }
                4 => set_heartbeat_interval(&engine, &log, "shop", 3),
                5 => {
                    let states = engine.desired_state(&Target::Node("shop".into()));
                    let in_sync = states.iter().filter(|s| s.in_sync).count();
                    log.push(format!(
                        "in sync       {in_sync}/{} shop instances report the desired state",
                        states.len()
                    ));
                }
                _ => send(&engine, &log, "ping to * after the restart", SendRequest::new(everyone(), "ping")),
            }
            step += 1;
        }
        draw(&engine, &log, &screen, t, false);
    }

    // The last frame, also off a terminal, so the last outcomes are on screen.
    draw(&engine, &log, &screen, start.elapsed(), true);
    for node in &nodes {
        node.stop().await;
    }
    // The demo's database is deleted next: what it could not write does not matter.
    let _ = engine.shutdown().await;
    broker.kill().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    println!("demo finished: every node stopped cleanly, broker stopped.");
    Ok(())
}

/// The web console on `listen`, or on a free loopback port if that one is taken: a demo should
/// start whatever else runs on 8080.
async fn start_console(engine: Arc<Engine>, listen: std::net::SocketAddr) -> Result<Console, Failure> {
    let config = |listen| ConsoleConfig { listen, token: None };
    match Console::start(engine.clone(), config(listen)).await {
        Ok(console) => Ok(console),
        Err(_) => Ok(Console::start(engine, config(std::net::SocketAddr::new(listen.ip(), 0))).await?),
    }
}

/// What every frame shows the same.
struct Screen {
    /// The broker's URL.
    broker: String,
    /// The web console's URL.
    console: String,
    /// How long the demo runs.
    total: Duration,
    /// Redraw in place (a terminal), or print a frame now and then (a pipe).
    terminal: bool,
}

fn draw(engine: &Engine, log: &Log, screen: &Screen, t: Duration, last: bool) {
    let Screen { broker: url, console, total, terminal } = screen;
    let terminal = *terminal;
    // Off a terminal (piped, CI), a frame every 5 s instead of redrawing in place.
    if !terminal && !last && !t.as_secs().is_multiple_of(5) {
        return;
    }
    let instances = engine.instances();
    let now = table::now_ms();
    let mut frame = String::new();
    if terminal {
        frame.push_str("\x1b[H\x1b[2J");
    }
    frame.push_str(&format!(
        "SubNodeSync demo   broker {url}   console {console}   {}s / {}s   Ctrl-C to stop\n\n",
        t.as_secs(),
        total.as_secs()
    ));
    frame.push_str(&table::instances(&instances, now, crate::colour::on_stdout()));
    frame.push_str("\nEvents\n");
    for line in log.lines() {
        frame.push_str("  ");
        frame.push_str(&line);
        frame.push('\n');
    }
    print!("{frame}");
}
