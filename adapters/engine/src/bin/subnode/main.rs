//! `subnode`: manage a SubNodeSync fleet from the terminal.
//!
//! Connection settings come from flags, then the nodes' `SUBNODE_*` environment variables, then
//! defaults. Exit codes: 0 success, 1 a command failed or timed out somewhere (`config show`: an
//! instance drifts), 2 bad usage or settings, 3 the database or broker could not be used, 4 a
//! rollout stopped at its `--max-failures` with instances never sent.

mod broker;
mod colour;
mod config;
mod demo;
mod node;
mod rollout;
mod send;
mod table;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use subnodesync_engine::console::{Console, ConsoleConfig};
use subnodesync_engine::{
    printable, rfc3339, Database, Engine, EngineConfig, Error, Location, Printable, Selector,
    HEARTBEAT_INTERVAL_EXPECTED, HEARTBEAT_INTERVAL_RANGE,
};
use subnodesync_engine::{HISTORY_MAX_AGE, HISTORY_MAX_COMMANDS, MAX_INSTANCES, MAX_STORED_JSON};
use subnodesync_host::config::{parse_duration, read_password_file, Secret};
use subnodesync_host::InvalidValue;

const EXAMPLES: &str = "Examples:
  subnode demo                                  # everything in one process, nothing to install
  subnode broker &                              # a broker on localhost:1883
  subnode nodes --json
  subnode nodes --where node=my-app --where version=1.0.0
  subnode watch
  subnode send 'my-app/*' ping                  # every instance of my-app
  subnode send my-app-host1-4242 echo -p text=hi --timeout 5s
  subnode send '*' status --where version=1.0.0
  subnode send 'my-app/*' echo --rollout 10% --pause 30s --max-failures 2   # in waves
  subnode cancel my-app-host1-4242 REQUEST_ID   # ends a running command
  subnode history --limit 5
  subnode config set 'my-app/*' heartbeat_interval=10 log_level=debug   # desired state, retained
  subnode config show                           # per instance: desired, reported, in sync
  subnode serve                                 # the web console on http://127.0.0.1:8080/
  subnode history --before REQUEST_ID           # the page after the one that ended there";

/// Manage a SubNodeSync fleet: see the nodes, watch them live, send commands.
///
/// Try `subnode demo`: an embedded broker, an engine and a few nodes in one process.
#[derive(Debug, Parser)]
#[command(name = "subnode", version, propagate_version = true, max_term_width = 100, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    conn: Connection,
    #[command(flatten)]
    limits: Limits,
    #[command(subcommand)]
    command: Command,
}

/// How to reach the broker and where the registry lives (flags win over `SUBNODE_*`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection (flags, then SUBNODE_* variables, then defaults)")]
struct Connection {
    /// Broker URL: mqtt://host:port, mqtts://host:port, ws://host:port/path or wss://host:port/path
    /// [env: SUBNODE_BROKER_URL; default mqtt://localhost:1883]
    #[arg(long, global = true, value_name = "URL")]
    broker: Option<String>,
    /// MQTT username [env: SUBNODE_USERNAME]
    #[arg(long, global = true)]
    username: Option<String>,
    /// MQTT password; visible to other users in the process list, prefer --password-file
    /// [env: SUBNODE_PASSWORD]
    #[arg(long, global = true, value_parser = secret)]
    password: Option<Secret>,
    /// File whose first line is the MQTT password [env: SUBNODE_PASSWORD_FILE]
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "password")]
    password_file: Option<String>,
    /// For mqtts:// and wss://: PEM file of the CA(s) to trust instead of the system's
    /// [env: SUBNODE_TLS_CA]
    #[arg(long, global = true, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// For mqtts:// and wss://: PEM client certificate [env: SUBNODE_TLS_CERT]
    #[arg(long, global = true, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// For mqtts:// and wss://: PEM private key of the client certificate [env: SUBNODE_TLS_KEY]
    #[arg(long, global = true, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Topic prefix the nodes use [env: SUBNODE_TOPIC_PREFIX; default subnodesync]
    #[arg(long, global = true, value_name = "PREFIX")]
    prefix: Option<String>,
    /// Registry and history: a SQLite file, or a postgres://USER:PASSWORD@HOST:PORT/DATABASE URL
    /// several engines share [env: SUBNODE_DB; default a file in your data directory]
    // Parsed in `config`, not by clap, whose errors repeat the value (and a URL's password).
    #[arg(long, global = true, value_name = "FILE|URL")]
    db: Option<String>,
    /// The fleet's heartbeat interval; silent for 3 of them means missing
    /// [env: SUBNODE_HEARTBEAT_INTERVAL; default 30s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = heartbeat_interval)]
    heartbeat_interval: Option<Duration>,
}

/// What an engine keeps at most (flags win over `SUBNODE_*`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Engine limits (flags, then SUBNODE_* variables, then defaults)")]
struct Limits {
    /// Most instances in the registry; messages about new ones beyond it are refused and counted
    /// [env: SUBNODE_MAX_INSTANCES; default 100000]
    #[arg(long, global = true, value_name = "N", value_parser = |t: &str| MAX_INSTANCES.parse(t))]
    max_instances: Option<usize>,
    /// Most bytes of an instance's register or metrics JSON kept; larger ones keep their fields
    /// only [env: SUBNODE_MAX_STORED_JSON; default 16384]
    #[arg(long, global = true, value_name = "BYTES", value_parser = |t: &str| MAX_STORED_JSON.parse(t))]
    max_stored_json: Option<usize>,
    /// Commands older than this leave the history, with their results
    /// [env: SUBNODE_HISTORY_MAX_AGE; default 30d]
    #[arg(long, global = true, value_name = "DURATION", value_parser = |t: &str| HISTORY_MAX_AGE.parse(t))]
    history_max_age: Option<Duration>,
    /// Most commands the history keeps, with their results
    /// [env: SUBNODE_HISTORY_MAX_COMMANDS; default 10000]
    #[arg(long, global = true, value_name = "N", value_parser = |t: &str| HISTORY_MAX_COMMANDS.parse(t))]
    history_max_commands: Option<usize>,
}

impl Limits {
    /// `config` with the limits given as flags.
    fn apply(&self, mut config: EngineConfig) -> EngineConfig {
        let Self { max_instances, max_stored_json, history_max_age, history_max_commands } = *self;
        config.max_instances = max_instances.unwrap_or(config.max_instances);
        config.max_stored_json = max_stored_json.unwrap_or(config.max_stored_json);
        config.retention.max_age = history_max_age.unwrap_or(config.retention.max_age);
        config.retention.max_commands = history_max_commands.unwrap_or(config.retention.max_commands);
        config
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an embedded broker, an engine and a few nodes, and show the fleet live.
    Demo(demo::DemoArgs),
    /// Run an embedded MQTT broker (rumqttd) for a fleet that has none.
    Broker {
        /// Port to listen on.
        #[arg(long, default_value_t = 1883)]
        port: u16,
        /// Address to listen on; 0.0.0.0 for every interface.
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
    },
    /// List the instances in the registry.
    ///
    /// With --where, only those that match; of any status unless status= is one of the filters.
    Nodes {
        /// Print JSON (an array of instances) instead of a table.
        #[arg(long)]
        json: bool,
        /// Read the database only; do not connect to the broker.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        filters: Filters,
    },
    /// Stream registrations, status changes, missing heartbeats and results as they happen.
    Watch {
        /// Print one JSON object per event.
        #[arg(long)]
        json: bool,
        /// Show every heartbeat too.
        #[arg(long)]
        heartbeats: bool,
        /// Share heartbeat ingest with other engines in this group ($share/GROUP/...).
        #[arg(long, value_name = "GROUP")]
        share: Option<String>,
        /// Prune lost, offline and missing instances this long after they went.
        #[arg(long, value_name = "DURATION", value_parser = age)]
        prune_after: Option<Duration>,
    },
    /// Run the engine with the web console: a live dashboard, a JSON API, server-sent events and
    /// Prometheus metrics.
    ///
    /// Loopback only unless a token is set (SUBNODE_HTTP_TOKEN or --token-file): programs send
    /// it as `Authorization: Bearer <token>`, people sign in with it on the page.
    Serve(ServeArgs),
    /// Send a command and wait for every targeted instance to answer.
    ///
    /// TARGET is an instance id, NODE/INSTANCE_ID, NODE/* (broadcast to every instance of NODE)
    /// or * (every reachable instance); --where narrows NODE/* or * to the registry's matching
    /// instances, sent one by one. The exit code is 0 only if every targeted instance answered
    /// with success; 4 if a --rollout stopped at --max-failures.
    Send(send::SendArgs),
    /// Show the commands sent and the results received, newest first, a page at a time.
    History {
        /// How many commands to show.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        limit: u32,
        /// Start after this command: the request id a page ended with gives the next page.
        #[arg(long, value_name = "REQUEST_ID")]
        before: Option<String>,
        /// Print JSON (an array of commands with their results).
        #[arg(long)]
        json: bool,
    },
    /// Desired state: settings every instance of a node name, or one instance, converges on.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Run a sample node (built-in commands plus `echo` and `sleep`, every desired setting
    /// accepted) to try the other commands on.
    ///
    /// Configured like any node by SUBNODE_* variables; --broker and --prefix apply too.
    Node(node::NodeArgs),
    /// Cancel a running command: sends the built-in `cancel` and waits for its results.
    ///
    /// The cancelled command ends with a failed result of its own. The exit code is 0 only if
    /// every targeted instance cancelled it.
    Cancel(send::CancelArgs),
    /// Remove lost, offline and missing instances older than an age and clear their retained
    /// messages.
    Prune {
        /// Only instances whose status changed at least this long ago.
        #[arg(long, value_name = "DURATION", value_parser = age, default_value = "1h")]
        older_than: Duration,
        /// Print JSON (the pruned instance ids).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on [env: SUBNODE_HTTP_LISTEN; default 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR", value_parser = subnodesync_engine::console::parse_listen)]
    listen: Option<std::net::SocketAddr>,
    /// File whose first line is the console's token [env: SUBNODE_HTTP_TOKEN]
    #[arg(long, value_name = "FILE")]
    token_file: Option<String>,
    /// Share heartbeat ingest with other engines in this group ($share/GROUP/...).
    #[arg(long, value_name = "GROUP")]
    share: Option<String>,
    /// Prune lost, offline and missing instances this long after they went.
    #[arg(long, value_name = "DURATION", value_parser = age)]
    prune_after: Option<Duration>,
}

/// `--where KEY=VALUE`, repeatable: the instances `send` and `nodes` take, by what the registry
/// knows of them.
#[derive(Debug, Args)]
struct Filters {
    /// Only instances matching KEY=VALUE: node, version, host or status (repeat to narrow further).
    #[arg(long = "where", short = 'w', value_name = "KEY=VALUE")]
    list: Vec<String>,
}

impl Filters {
    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `selector` narrowed by every filter; a bad one is a usage error, found before anything
    /// connects.
    fn narrow(&self, mut selector: Selector) -> Result<Selector, Failure> {
        for filter in &self.list {
            selector.add_filter(filter).map_err(|e| Failure(2, format!("--where {e}")))?;
        }
        Ok(selector)
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| format!("expected {e}"))
}

/// A duration within `range`: every duration flag has one, so none can overflow a deadline.
fn duration_in(text: &str, range: std::ops::RangeInclusive<Duration>, expected: &str) -> Result<Duration, String> {
    duration(text).and_then(|d| if range.contains(&d) { Ok(d) } else { Err(format!("expected {expected}")) })
}

/// `--timeout`: how long `send` waits.
fn timeout(text: &str) -> Result<Duration, String> {
    duration_in(text, Duration::from_millis(1)..=Duration::from_secs(24 * 3600), "a duration from 1ms to 24h")
}

/// `--heartbeat-interval`: the nodes' range.
fn heartbeat_interval(text: &str) -> Result<Duration, String> {
    duration_in(text, HEARTBEAT_INTERVAL_RANGE, HEARTBEAT_INTERVAL_EXPECTED)
}

/// `--prune-after`, `--older-than`: ages up to ten years.
fn age(text: &str) -> Result<Duration, String> {
    duration_in(text, Duration::from_secs(1)..=Duration::from_secs(10 * 365 * 86_400), "a duration from 1s to 87600h")
}

/// `--password`: kept out of every `Debug` print.
fn secret(text: &str) -> Result<Secret, String> {
    Ok(Secret::new(text))
}

/// A failure, with the exit code it deserves.
struct Failure(u8, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match e {
            Error::Setting(_) | Error::Tls(_) | Error::InvalidParameters(_) | Error::InvalidCommand(_) => 2,
            Error::InvalidSetting(_) => 2,
            Error::UnknownInstance(_) | Error::NoTargets => 1,
            Error::UnknownRequest(_) | Error::InvalidTarget(_) => 2,
            _ => 3,
        };
        Self(code, e.to_string())
    }
}

impl Connection {
    fn config(&self) -> Result<EngineConfig, Error> {
        let mut config = EngineConfig::from_env()?;
        if let Some(url) = &self.broker {
            config = config.broker_url(url)?;
        }
        if let Some(u) = &self.username {
            config.username = Some(u.clone());
        }
        if let Some(p) = &self.password {
            config.password = Some(p.clone());
        }
        if let Some(file) = &self.password_file {
            config.password = Some(read_password_file(file, "--password-file").map_err(Error::Setting)?);
        }
        if let Some(p) = &self.prefix {
            config.topic_prefix = p.clone();
        }
        for (flag, setting) in [
            (&self.tls_ca, &mut config.tls_ca),
            (&self.tls_cert, &mut config.tls_cert),
            (&self.tls_key, &mut config.tls_key),
        ] {
            if let Some(path) = flag {
                *setting = Some(path.clone());
            }
        }
        if let Some(db) = &self.db {
            config.db = Location::parse(db).map_err(|e| match e {
                Error::Setting(v) => Error::Setting(InvalidValue { name: "--db", ..v }),
                other => other,
            })?;
        }
        if let Some(i) = self.heartbeat_interval {
            config.heartbeat_interval = i;
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Warnings (a lost broker, a skipped message) always reach stderr; SUBNODE_LOG asks for more.
    // The demo draws the screen itself, so it logs only when asked.
    let logging = match cli.command {
        Command::Demo(_) if std::env::var_os(subnodesync_host::config::LOG).is_none() => Ok(()),
        Command::Node(_) => subnodesync_host::init_logging(),
        _ => subnodesync_host::init_logging_or("warn"),
    };
    if let Err(e) = logging {
        eprintln!("subnode: {e}");
    }
    if let Command::Broker { port, bind } = cli.command {
        // rumqttd runs its own threads and blocks; no tokio needed.
        return match broker::run(bind, port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(Failure(3, e)),
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(Failure(3, format!("cannot start the runtime: {e}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => fail(f),
    }
}

fn fail(Failure(code, message): Failure) -> ExitCode {
    eprintln!("subnode: {message}");
    ExitCode::from(code)
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let config = cli.limits.apply(cli.conn.config()?);
    match cli.command {
        Command::Demo(args) => demo::run(args).await.map(|()| 0),
        // Served in `main`, before any runtime exists.
        Command::Broker { .. } => Ok(0),
        Command::Nodes { json, offline, filters } => nodes(config, json, offline, &filters).await,
        Command::Watch { json, heartbeats, share, prune_after } => {
            let config = EngineConfig { share_group: share, heartbeat_events: heartbeats, prune_after, ..config };
            watch(config, json).await
        }
        Command::Send(args) => send::run(config, args).await,
        Command::Config { command } => config::run(config, command).await,
        Command::Serve(args) => serve(config, args).await,
        Command::Node(args) => node::run(&cli.conn, args).await,
        Command::Cancel(args) => send::cancel(config, args).await,
        Command::History { limit, before, json } => history(config, limit as usize, before, json).await,
        Command::Prune { older_than, json } => {
            let engine = Engine::start(EngineConfig { heartbeats: false, ..config }).await?;
            if !engine.wait_synced(Duration::from_secs(3)).await {
                unreachable_broker(&engine).await?;
            }
            let pruned = engine.prune(older_than).await;
            stop(&engine).await?;
            let pruned = pruned?;
            if json {
                println!("{}", Value::from(pruned));
            } else {
                println!("pruned {} instance(s){}", pruned.len(), list_suffix(&pruned));
            }
            Ok(0)
        }
    }
}

fn list_suffix(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        let shown: Vec<String> = ids.iter().map(|id| printable(id)).collect();
        format!(": {}", shown.join(", "))
    }
}

async fn nodes(config: EngineConfig, json: bool, offline: bool, filters: &Filters) -> Result<u8, Failure> {
    let selector = filters.narrow(Selector::default())?;
    let mut instances = if offline {
        let db = config.db.clone();
        tokio::task::spawn_blocking(move || Database::open(&db)?.load_instances())
            .await
            .map_err(|e| Failure(3, e.to_string()))??
    } else {
        let engine = Engine::start(EngineConfig { heartbeats: false, ..config }).await?;
        if !engine.wait_synced(Duration::from_secs(5)).await {
            unreachable_broker(&engine).await?;
            eprintln!("subnode: the broker did not answer in 5 s; showing the database as it was");
        }
        let instances = engine.instances();
        stop(&engine).await?;
        instances
    };
    instances.retain(|i| selector.lists(i));
    let now = table::now_ms();
    if json {
        println!("{}", Value::from(instances.iter().map(|i| i.to_json(now)).collect::<Vec<_>>()));
    } else {
        print!("{}", table::instances(&instances, now, colour::on_stdout()));
    }
    Ok(0)
}

async fn watch(config: EngineConfig, json: bool) -> Result<u8, Failure> {
    let engine = Engine::start(config).await?;
    let mut events = engine.events();
    // A broker that refuses us is reported at once; a slow one is waited for, with its
    // disconnects and reconnects shown as events.
    if !engine.wait_synced(Duration::from_secs(5)).await {
        unreachable_broker(&engine).await?;
    }
    if !json {
        eprintln!("watching; Ctrl-C to stop");
    }
    let mut out = std::io::stdout();
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(event) => {
                    let line = if json { event.to_json().to_string() } else { format!("{} {event}", table::clock()) };
                    // A closed stdout (`| head`) ends the watch.
                    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => eprintln!("subnode: {n} events skipped (too slow)"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            () = subnodesync_tokio::shutdown_signal() => break,
        }
    }
    stop(&engine).await?;
    Ok(0)
}

async fn serve(config: EngineConfig, args: ServeArgs) -> Result<u8, Failure> {
    let mut console = ConsoleConfig::from_lookup(&|key| std::env::var(key).ok())?;
    if let Some(listen) = args.listen {
        console.listen = listen;
    }
    if let Some(file) = &args.token_file {
        console.token = Some(read_password_file(file, "--token-file").map_err(Error::Setting)?);
    }
    let config = EngineConfig { share_group: args.share, prune_after: args.prune_after, ..config };
    let engine = std::sync::Arc::new(Engine::start(config).await?);
    let console = match Console::start(engine.clone(), console).await {
        Ok(console) => console,
        Err(e) => {
            stop(&engine).await?;
            return Err(e.into());
        }
    };
    if !engine.wait_synced(Duration::from_secs(5)).await {
        unreachable_broker(&engine).await?;
    }
    // The address on stdout, for scripts (and `--listen 127.0.0.1:0`); the rest on stderr.
    println!("{}", console.url());
    eprintln!("console on {}; Ctrl-C to stop", console.url());
    subnodesync_tokio::shutdown_signal().await;
    drop(console);
    stop(&engine).await?;
    Ok(0)
}

/// Stops the engine, failing when what it accepted could not be written to the database.
async fn stop(engine: &Engine) -> Result<(), Failure> {
    Ok(engine.shutdown().await?)
}

/// Ends the command with the reason when the broker cannot be reached at all (refused, bad
/// credentials, not authorized, TLS): waiting longer would not help.
async fn unreachable_broker(engine: &Engine) -> Result<(), Failure> {
    match engine.connection_problem() {
        Some(problem) => {
            // The broker's refusal is the news; a database error would be reported by itself.
            if let Err(e) = engine.shutdown().await {
                eprintln!("subnode: {e}");
            }
            Err(Failure(3, format!("cannot use the broker: {}", Printable(&problem))))
        }
        None => Ok(()),
    }
}

async fn history(config: EngineConfig, limit: usize, before: Option<String>, json: bool) -> Result<u8, Failure> {
    let db = config.db;
    let history = tokio::task::spawn_blocking(move || Database::open(&db)?.history(limit, before.as_deref()))
        .await
        .map_err(|e| Failure(3, e.to_string()))??;
    if json {
        let list: Vec<Value> = history.iter().map(|(c, rs)| c.to_json_with(rs)).collect();
        println!("{}", Value::from(list));
    } else {
        for (c, results) in &history {
            let wave = c.wave.as_ref().map(|w| format!(", rollout {} wave {}", Printable(&w.rollout_id), w.number));
            println!(
                "{} {} {} -> {} ({} attempt(s), {} result(s){})",
                rfc3339(c.sent_ms),
                Printable(&c.request_id),
                Printable(&c.command),
                Printable(&c.target),
                c.attempts,
                results.len(),
                wave.unwrap_or_default()
            );
            for r in results {
                println!("    {r}");
            }
        }
        // A full page may have more behind it: say how to get it.
        if let Some((last, _)) = history.last().filter(|_| history.len() == limit) {
            println!("more: subnode history --limit {limit} --before {}", Printable(&last.request_id));
        }
    }
    Ok(0)
}
