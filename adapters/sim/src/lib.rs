//! # subnodesync-sim
//!
//! A deterministic simulator for SubNodeSync: many nodes (the real `subnodesync-core`,
//! unmodified) against a simulated MQTT 3.1.1 broker and a management engine, in virtual time,
//! single-threaded, with no sockets, no real clock and no thread. One `u64` seed fixes the whole
//! run: every latency, split, fault and backoff draw, so a failing seed replays exactly.
//!
//! The network between each node and the broker is a pair of byte streams with fault
//! injection ([`Faults`]): connection resets, delayed delivery, streams split at random points
//! (several packets per read, partial packets), half-open connections (one side silent), broker
//! restarts with and without losing sessions, duplicate command deliveries, refused CONNACKs and
//! the node's clock jumping forward.
//!
//! Invariants checked on every run (each a [`Failure`] naming the seed):
//!
//! * every command the engine sent runs at most once on a node (its handler sees one
//!   [`Event::Command`](subnodesync_core::Event::Command) per `request_id`), all final results
//!   for one `request_id` are byte-identical (a replay, never a second execution), and after
//!   the quiet tail every request has its final result;
//! * a node publishes `register` after every accepted CONNACK;
//! * while connected, a heartbeat is never later than one interval after the previous one (or
//!   after the connection came up, when one is overdue);
//! * every backoff delay lies in `[reconnect_min, reconnect_max]`, and the node asks for a
//!   transport again exactly when that delay is over (earlier only by a clock jump);
//! * no panic, and no busy loop: after `handle_timeout(now)` the node's next deadline is later
//!   than `now`, or it made progress;
//! * every node is connected again at the end of the quiet tail, with a retained `register`
//!   and a retained status `online` (an old connection's will never has the last word);
//! * every node's retained desired-state report carries the merged version of the desired
//!   documents the broker holds for it, and exactly the merged settings its application took.
//!
//! ```
//! use subnodesync_sim::{run, SimConfig};
//!
//! let report = run(42, &SimConfig::default()).unwrap_or_else(|f| panic!("{f}"));
//! assert!(report.stats.connects >= 3);
//! ```
//!
//! Your own application commands: implement [`Handler`] and call [`run_with`].
//!
//! In this repository:
//!
//! * `cargo test -p subnodesync-sim` runs 1,000 seeds of [`SimConfig::default`];
//! * `SUBNODE_SIM_SEEDS=100000 cargo test -p subnodesync-sim --release` runs more
//!   (`SUBNODE_SIM_FIRST=<n>` starts elsewhere);
//! * `SUBNODE_SIM_SEED=<n> cargo test -p subnodesync-sim -- --nocapture replay` replays one seed
//!   and prints its trace: every packet, fault, timer firing and engine action, one per line;
//! * `cargo run --release -p subnodesync-sim --bin node_days` measures simulated node-days per
//!   second (one node, 30 s heartbeats, faults on);
//! * `cargo run --release -p subnodesync-sim --bin reconnect_storm [nodes]` restarts the broker
//!   under a whole fleet and reports the peak reconnect rate with jitter and without.
//!
//! What is modelled, and how: each connection is a pair of ordered byte streams. A dropped
//! segment shows up as a delay (TCP retransmits it), later bytes wait behind it. The broker keeps
//! sessions for clean-session-off clients (subscriptions and unacknowledged QoS 1 messages,
//! resent with DUP on resume), publishes the will on an unclean end (a crash publishes none),
//! takes over a client id from an older connection, stores retained messages, answers PINGREQ
//! and drops a client silent for 1.5 × its keep-alive. The engine sits inside the broker: it
//! sees everything nodes publish, and publishes commands (QoS 1, not retained) on instance
//! control topics, resending any request without a final result after
//! [`SimConfig::engine_retry`].
//!
//! ## Layout
//!
//! For anyone changing the simulator (these modules are private): `world` holds virtual time, the
//! event queue and its loop, the deadline index (node timers, broker keep-alives) that lets the
//! loop find what is due without scanning every node or connection, and the checks at the end of a
//! run; `node` drives each real node and checks what it does; `network` carries the bytes, with
//! delays, splits, resets and half-open streams; `broker` is the simulated MQTT broker, whose
//! packets come from `subnodesync-fixtures` (hand-encoded, sharing no code with the core's
//! decoder); `engine` is the management engine inside it; `faults` schedules the faults that have a
//! clock of their own; `rng` is the seeded generator. Everything draws from one [`Rng`] in one
//! order, so a change that adds, drops or moves a draw changes the run of every seed.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod broker;
mod desired;
mod engine;
mod faults;
mod network;
mod node;
mod rng;
mod world;

use std::fmt;

use subnodesync_core::{Config, Duration};

pub use rng::Rng;

/// Fault rates. Rates "per hour" are Poisson rates in simulated time; probabilities apply to
/// each occasion (each write, each CONNECT, each command publish). Faults stop at the start of
/// the quiet tail.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Connection resets, per node per hour: both sides see the connection drop.
    pub resets_per_hour: f64,
    /// Half-open connections, per node per hour: one direction goes silent (bytes and the
    /// eventual close are lost), the other keeps working.
    pub half_opens_per_hour: f64,
    /// Broker restarts per hour: every connection drops, the broker is down for 1 to 20 s.
    pub broker_restarts_per_hour: f64,
    /// Probability that a broker restart loses every session (subscriptions and queued messages).
    pub lose_sessions: f64,
    /// Forward jumps of a node's clock, per node per hour.
    pub clock_jumps_per_hour: f64,
    /// Largest clock jump.
    pub max_clock_jump: Duration,
    /// Probability that a write is delayed (TCP retransmission of a dropped segment), by up to
    /// `max_delay`; later bytes wait behind it, as in a byte stream.
    pub delay: f64,
    /// Largest extra delay.
    pub max_delay: Duration,
    /// Probability that a write is split at random points into separate reads.
    pub split: f64,
    /// Probability that the broker delivers a command twice (a second copy, new packet id).
    pub duplicate: f64,
    /// Probability that the broker refuses a CONNECT (return code 3, server unavailable).
    pub refuse_connack: f64,
}

impl Faults {
    /// No faults at all.
    pub const NONE: Self = Self {
        resets_per_hour: 0.0,
        half_opens_per_hour: 0.0,
        broker_restarts_per_hour: 0.0,
        lose_sessions: 0.0,
        clock_jumps_per_hour: 0.0,
        max_clock_jump: Duration::from_secs(0),
        delay: 0.0,
        max_delay: Duration::from_secs(0),
        split: 0.0,
        duplicate: 0.0,
        refuse_connack: 0.0,
    };

    /// Frequent faults of every kind, so that a few simulated minutes meet each of them.
    pub const CHAOS: Self = Self {
        resets_per_hour: 24.0,
        half_opens_per_hour: 8.0,
        broker_restarts_per_hour: 12.0,
        lose_sessions: 0.4,
        clock_jumps_per_hour: 8.0,
        max_clock_jump: Duration::from_secs(40),
        delay: 0.05,
        max_delay: Duration::from_secs(3),
        split: 0.3,
        duplicate: 0.15,
        refuse_connack: 0.15,
    };
}

impl Default for Faults {
    fn default() -> Self {
        Self::CHAOS
    }
}

/// One simulation's shape.
#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    /// How many nodes.
    pub nodes: usize,
    /// Simulated time with faults on and the engine sending new commands.
    pub duration: Duration,
    /// Simulated time after `duration` without faults and without new commands, so that every
    /// node reconnects and every result drains. Must exceed `node.reconnect_max` plus
    /// `engine_retry` plus a keep-alive and a half.
    pub quiet_tail: Duration,
    /// Fault rates.
    pub faults: Faults,
    /// Template for every node's configuration; each node gets `pid` 1000 + its index. Its
    /// `commands` must contain `app_command`.
    pub node: Config<'static>,
    /// The application command the engine sends besides the built-in `ping` and `status`.
    pub app_command: &'static str,
    /// Distinct requests the engine sends each node at most (keep it under the node's
    /// 32-request-id memory, or redeliveries may legitimately run again).
    pub commands_per_node: u32,
    /// The engine resends a request without a final result after this long.
    pub engine_retry: Duration,
    /// Whether the engine also sends `set_heartbeat_interval` (5 to 17 s, a new value each
    /// time) and `reregister`, and desired documents name `heartbeat_interval`; off keeps the
    /// heartbeat interval as configured.
    pub change_heartbeat_interval: bool,
    /// Desired-state changes the engine makes over `duration` (on average): retained
    /// documents for the name or one instance, now and then one without settings.
    pub desired_changes: u32,
    /// Record a readable trace (packets, faults, timer firings) in the [`Report`].
    pub trace: bool,
    /// A broker restart at exactly this simulated time (within `duration`), besides any the
    /// fault rates bring: the reconnect storm scenario.
    pub broker_restart_at: Option<Duration>,
}

impl Default for SimConfig {
    /// Three nodes, 4 simulated minutes of [`Faults::CHAOS`] and a 2-minute quiet tail, with
    /// short timers (10 s heartbeats, 20 s keep-alive, backoff 1 to 30 s) so that each run is
    /// short and still meets every fault.
    fn default() -> Self {
        Self {
            nodes: 3,
            duration: Duration::from_secs(240),
            quiet_tail: Duration::from_secs(120),
            faults: Faults::CHAOS,
            node: Config {
                keep_alive: Duration::from_secs(20),
                heartbeat_interval: Duration::from_secs(10),
                reconnect_min: Duration::from_secs(1),
                reconnect_max: Duration::from_secs(30),
                stable_after: Duration::from_secs(30),
                connect_timeout: Duration::from_secs(10),
                retransmit_after: Duration::from_secs(5),
                commands: &["echo"],
                ..Config::new("sim", "host", 0)
            },
            app_command: "echo",
            commands_per_node: 12,
            engine_retry: Duration::from_secs(20),
            change_heartbeat_interval: true,
            desired_changes: 6,
            trace: false,
            broker_restart_at: None,
        }
    }
}

/// How an application command ends, as a [`Handler`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// How long after the command arrived the handler completes it.
    pub after: Duration,
    /// Whether it succeeded.
    pub success: bool,
    /// The result message.
    pub message: String,
    /// Result data, JSON text.
    pub data: Option<String>,
}

/// The application side of every simulated node: runs application commands.
pub trait Handler {
    /// Called once for every [`Event::Command`](subnodesync_core::Event::Command) node `node`
    /// raises. Return when and how it completes, or `None` to never complete it (the core's
    /// deadline, if the engine set one, then answers). `parameters` is the JSON object text.
    fn on_command(
        &mut self,
        node: usize,
        name: &str,
        request_id: &str,
        parameters: &str,
        rng: &mut Rng,
    ) -> Option<Reply>;
}

/// The default handler: completes every command after 0 to 6 s with message `echoed` and its
/// parameters as data.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Handler for Echo {
    fn on_command(&mut self, _: usize, _: &str, _: &str, parameters: &str, rng: &mut Rng) -> Option<Reply> {
        Some(Reply {
            after: Duration::from_millis(rng.below(6_000)),
            success: true,
            message: "echoed".into(),
            data: Some(parameters.into()),
        })
    }
}

/// The kinds of injected faults, in the order of [`SimStats::faults`].
pub const FAULT_KINDS: [&str; 7] =
    ["resets", "half-opens", "broker restarts", "sessions lost", "clock jumps", "refused connacks", "duplicates"];

/// Counters of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// CONNACKs accepted, over all nodes.
    pub connects: u32,
    /// Connections lost, over all nodes.
    pub disconnects: u32,
    /// Heartbeats published.
    pub heartbeats: u32,
    /// Requests the engine made: one per node a command was addressed to (a broadcast counts
    /// once for every node).
    pub requests: u32,
    /// Commands sent on the broadcast control topic.
    pub broadcasts: u32,
    /// Control messages the engine published, resends included.
    pub publishes: u32,
    /// Final results the engine received, duplicates included.
    pub results: u32,
    /// Application commands handed to the handler.
    pub executed: u32,
    /// Last wills (`status` `lost`) the broker published.
    pub wills: u32,
    /// Desired documents the engine published or deleted (lost ones included).
    pub desired_changes: u32,
    /// Faults injected, by kind, in the order of [`FAULT_KINDS`].
    pub faults: [u32; 7],
    /// Bytes carried, both directions.
    pub bytes: u64,
}

/// A run that kept every invariant.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed that produced it.
    pub seed: u64,
    /// Counters.
    pub stats: SimStats,
    /// A hash of every step's time and kind: equal for equal runs.
    pub digest: u64,
    /// The readable trace, when [`SimConfig::trace`] was set.
    pub trace: Vec<String>,
}

/// A broken invariant (or a panic), with everything needed to replay it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed to replay.
    pub seed: u64,
    /// Simulated time of the failure, in seconds from the start (NaN for a panic).
    pub at_secs: f64,
    /// What went wrong.
    pub message: String,
    /// The whole trace up to the failure, when tracing was on (`Display` shows its end).
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} failed at t={:.3}s: {}", self.seed, self.at_secs, self.message)?;
        for line in &self.trace[self.trace.len().saturating_sub(40)..] {
            writeln!(f, "  {line}")?;
        }
        write!(f, "replay: SUBNODE_SIM_SEED={} cargo test -p subnodesync-sim -- --nocapture replay", self.seed)
    }
}

impl std::error::Error for Failure {}

/// Runs one simulation with the [`Echo`] handler.
pub fn run(seed: u64, config: &SimConfig) -> Result<Report, Failure> {
    run_with(seed, config, &mut Echo)
}

/// Runs one simulation with your own application handler. A panic anywhere (core, handler or
/// simulator) becomes a [`Failure`].
pub fn run_with(seed: u64, config: &SimConfig, handler: &mut dyn Handler) -> Result<Report, Failure> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world::simulate(seed, config, handler)));
    outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".into());
        Err(Failure { seed, at_secs: f64::NAN, message: format!("panic: {message}"), trace: Vec::new() })
    })
}
