//! `subnode send` and `subnode cancel`: a command to a target, with its progress as it comes
//! and its outcome.

use std::io::IsTerminal as _;
use std::time::Duration;

use clap::Args;
use serde_json::{Map, Value};
use subnodesync_engine::{Engine, EngineConfig, Printable, ResultRecord, Selector, SendOutcome, SendRequest, Target};

use crate::rollout::RolloutArgs;
use crate::{stop, timeout, unreachable_broker, Failure, Filters};

/// Options of `subnode send`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Who gets it: INSTANCE_ID, NODE/INSTANCE_ID, NODE/* or *.
    target: String,
    /// The command, e.g. ping, status, echo.
    command: String,
    /// A parameter, KEY=VALUE; VALUE is read as JSON if it is JSON (42, true), else as text.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// All parameters as one JSON object (merged under any --param).
    #[arg(long, value_name = "JSON")]
    params_json: Option<String>,
    #[command(flatten)]
    filters: Filters,
    /// How long to wait for every result.
    #[arg(long, value_name = "DURATION", value_parser = timeout, default_value = "10s")]
    timeout: Duration,
    /// Resends to silent instances within the timeout (same request id: nodes de-duplicate).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=100))]
    retries: u32,
    /// The request id to send (1 to 64 printable ASCII characters, no quote or backslash)
    /// instead of a fresh one, to cancel it from elsewhere; with --rollout, the rollout's id,
    /// which each wave's request id extends with -w1, -w2...
    #[arg(long, value_name = "ID")]
    request_id: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    rollout: RolloutArgs,
}

/// Options of `subnode cancel`.
#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// Who runs the command: INSTANCE_ID, NODE/INSTANCE_ID, NODE/* or *.
    target: String,
    /// The request id of the command to cancel (`subnode history` shows it).
    request_id: String,
    /// How long to wait for every result.
    #[arg(long, value_name = "DURATION", value_parser = timeout, default_value = "10s")]
    timeout: Duration,
    /// Resends to silent instances within the timeout (same request id: nodes de-duplicate).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=100))]
    retries: u32,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

fn parameters(args: &SendArgs) -> Result<String, Failure> {
    let mut map = match &args.params_json {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(Failure(2, "--params-json must be a JSON object".into())),
            Err(e) => return Err(Failure(2, format!("--params-json: {e}"))),
        },
        None => Map::new(),
    };
    for p in &args.params {
        let Some((k, v)) = p.split_once('=') else {
            return Err(Failure(2, format!("--param {p:?}: expected KEY=VALUE")));
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        map.insert(k.to_owned(), value);
    }
    Ok(Value::Object(map).to_string())
}

fn target(args: &SendArgs) -> Result<Target, Failure> {
    let target = Target::parse(&args.target);
    if args.filters.is_empty() {
        return Ok(target);
    }
    let selector = match target {
        Target::Node(node) => Selector { node_name: Some(node), ..Selector::default() },
        Target::Select(s) => s,
        Target::Instance { .. } => {
            return Err(Failure(2, "--where needs a set target: NODE/* or *".into()));
        }
    };
    Ok(Target::Select(args.filters.narrow(selector)?))
}

/// Sends the command, in waves with `--rollout`, and prints every result; 0 only if every
/// targeted instance succeeded.
pub(crate) async fn run(config: EngineConfig, args: SendArgs) -> Result<u8, Failure> {
    let request = SendRequest {
        target: target(&args)?,
        command: args.command.clone(),
        parameters: parameters(&args)?,
        timeout: args.timeout,
        retries: args.retries,
        request_id: args.request_id.clone(),
    };
    let rollout = args.rollout.request(request.clone());
    let engine = connect(config).await?;
    match rollout {
        Some(rollout) => crate::rollout::run(&engine, &rollout, args.json).await,
        None => send_and_report(&engine, &request, args.json).await,
    }
}

/// Sends the built-in `cancel` for `request_id` and prints its results as `send` does.
pub(crate) async fn cancel(config: EngineConfig, args: CancelArgs) -> Result<u8, Failure> {
    let request = SendRequest {
        target: Target::parse(&args.target),
        command: "cancel".into(),
        parameters: serde_json::json!({ "request_id": args.request_id }).to_string(),
        timeout: args.timeout,
        retries: args.retries,
        request_id: None,
    };
    let engine = connect(config).await?;
    send_and_report(&engine, &request, args.json).await
}

/// An engine for one request: connected, with the broker's retained messages taken in
/// (heartbeats left alone); the broker not answering is a failure.
pub(crate) async fn connect(config: EngineConfig) -> Result<Engine, Failure> {
    let engine = Engine::start(EngineConfig { heartbeats: false, ..config }).await?;
    if !engine.wait_synced(Duration::from_secs(5)).await {
        unreachable_broker(&engine).await?;
        stop(&engine).await?;
        return Err(Failure(3, "the broker did not answer in 5 s".into()));
    }
    Ok(engine)
}

/// Shows results as they arrive: progress updates on stderr (not with `--json`), and on a
/// terminal a counter of the final results.
pub(crate) struct Ticker {
    interactive: bool,
    json: bool,
}

impl Ticker {
    pub(crate) fn new(json: bool) -> Self {
        Self { interactive: std::io::stderr().is_terminal(), json }
    }

    /// Shows `result`, `answered` final results in.
    pub(crate) fn result(&self, result: &ResultRecord, answered: usize) {
        if !result.is_final() && !self.json {
            eprintln!("  progress {result}");
        } else if self.interactive {
            eprint!("\r\x1b[K  {answered} answered, waiting...");
        }
    }

    /// Clears the counter.
    pub(crate) fn clear(&self) {
        if self.interactive {
            eprint!("\r\x1b[K");
        }
    }
}

/// Sends `request`, stops the engine and prints the outcome; 0 only if every targeted instance
/// succeeded.
async fn send_and_report(engine: &Engine, request: &SendRequest, json: bool) -> Result<u8, Failure> {
    let ticker = Ticker::new(json);
    let sent = engine.send_with_progress(request, |r, answered| ticker.result(r, answered)).await;
    ticker.clear();
    // The outcome is printed even if the history could not be written: the nodes did answer.
    let stopped = stop(engine).await;
    let outcome = sent?;
    if json {
        let mut value = outcome_json(&outcome);
        value["success"] = outcome.all_succeeded().into();
        println!("{value}");
    } else {
        print_results(&outcome, request);
        println!(
            "{} answered of {} expected, {} failed, {} timed out (request {}, {} attempt(s))",
            outcome.results.len(),
            outcome.expected.len(),
            outcome.results.values().filter(|r| !r.success).count(),
            outcome.timed_out.len(),
            outcome.request_id,
            outcome.attempts
        );
    }
    stopped?;
    Ok(if outcome.all_succeeded() { 0 } else { 1 })
}

/// A request's outcome as `send --json` prints it, without `success`.
pub(crate) fn outcome_json(outcome: &SendOutcome) -> Value {
    serde_json::json!({
        "request_id": outcome.request_id,
        "expected": outcome.expected,
        "results": outcome.results.values().map(ResultRecord::to_json).collect::<Vec<_>>(),
        "timed_out": outcome.timed_out,
        "attempts": outcome.attempts,
    })
}

/// A line per final result, then a line per instance that timed out.
pub(crate) fn print_results(outcome: &SendOutcome, request: &SendRequest) {
    for r in outcome.results.values() {
        println!("{r}");
    }
    for id in &outcome.timed_out {
        println!("{} {} TIMEOUT: no result within {:?}", Printable(id), request.command, request.timeout);
    }
}
