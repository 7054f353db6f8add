//! `subnode send --rollout`: a command sent in waves, each wave's results as they come, and what
//! was sent, succeeded, failed and never sent.

use std::time::Duration;

use clap::Args;
use serde_json::Value;
use subnodesync_engine::{Engine, Portion, RolloutEvent, RolloutOutcome, RolloutRequest, SendRequest, WaveSize};

use crate::send::{outcome_json, print_results, Ticker};
use crate::{duration_in, stop, Failure};

/// The exit code of a rollout stopped at `--max-failures`, some instances never sent.
pub(crate) const STOPPED: u8 = 4;

/// The options of `subnode send` that make it a staged rollout.
#[derive(Debug, Args)]
#[command(next_help_heading = "Staged rollout")]
pub(crate) struct RolloutArgs {
    /// Send in waves of N instances, or N% of them (rounded up), in instance id order, each
    /// wave once the one before has answered or timed out.
    #[arg(long, value_name = "N|N%")]
    rollout: Option<WaveSize>,
    /// With --rollout: wait this long between waves.
    #[arg(long, value_name = "DURATION", value_parser = pause, requires = "rollout")]
    pause: Option<Duration>,
    /// With --rollout: stop before the next wave once more than N instances (or N% of them all)
    /// have failed or timed out; exit code 4 if some were never sent.
    #[arg(long, value_name = "N|N%", requires = "rollout")]
    max_failures: Option<Portion>,
}

/// `--pause`: up to a day.
fn pause(text: &str) -> Result<Duration, String> {
    duration_in(text, Duration::ZERO..=Duration::from_secs(24 * 3600), "a duration from 0s to 24h")
}

impl RolloutArgs {
    /// `send` as a rollout, if `--rollout` was given.
    pub(crate) fn request(&self, send: SendRequest) -> Option<RolloutRequest> {
        let mut request = RolloutRequest::new(send, self.rollout?);
        request.pause = self.pause.unwrap_or_default();
        request.max_failures = self.max_failures;
        Some(request)
    }
}

/// Runs the rollout, printing each wave as it goes, then stops the engine and prints the totals:
/// 0 if every instance succeeded, [`STOPPED`] if the rollout stopped at its threshold, else 1.
pub(crate) async fn run(engine: &Engine, request: &RolloutRequest, json: bool) -> Result<u8, Failure> {
    let ticker = Ticker::new(json);
    let rolled = engine
        .rollout(request, |event| match event {
            RolloutEvent::Wave { number, waves, request_id, instances } if !json => {
                println!("wave {number} of {waves} (request {request_id}): {} instance(s)", instances.len());
            }
            RolloutEvent::Result { result, answered } => ticker.result(result, answered),
            RolloutEvent::WaveDone(wave) => {
                ticker.clear();
                if !json {
                    print_results(wave, &request.send);
                }
            }
            RolloutEvent::Pause(pause) if !json => println!("pausing {pause:?}"),
            _ => {}
        })
        .await;
    ticker.clear();
    // The outcome is printed even if the history could not be written: the nodes did answer.
    let stopped = stop(engine).await;
    let outcome = rolled?;
    if json {
        println!("{}", to_json(&outcome));
    } else {
        print_totals(&outcome);
    }
    stopped?;
    Ok(if outcome.stopped() {
        STOPPED
    } else if outcome.all_succeeded() {
        0
    } else {
        1
    })
}

fn print_totals(outcome: &RolloutOutcome) {
    if let (true, Some(max)) = (outcome.stopped(), outcome.max_failures) {
        println!("stopped: {} failed or timed out, more than --max-failures {max}", outcome.failed());
    }
    println!(
        "rollout {}: {} instance(s) in waves of {}; {} sent in {} wave(s), {} succeeded, {} failed ({} timed out), {} never sent",
        outcome.rollout_id,
        outcome.instances.len(),
        outcome.wave_size,
        outcome.sent(),
        outcome.waves.len(),
        outcome.succeeded(),
        outcome.failed(),
        outcome.timed_out(),
        outcome.never_sent().len()
    );
}

/// The outcome as `send --rollout --json` prints it.
fn to_json(outcome: &RolloutOutcome) -> Value {
    let waves: Vec<Value> = outcome
        .waves
        .iter()
        .zip(1..)
        .map(|(wave, number): (_, u32)| {
            let mut value = outcome_json(wave);
            value["wave"] = number.into();
            value
        })
        .collect();
    serde_json::json!({
        "rollout_id": outcome.rollout_id,
        "instances": outcome.instances,
        "wave_size": outcome.wave_size,
        "waves": waves,
        "sent": outcome.sent(),
        "succeeded": outcome.succeeded(),
        "failed": outcome.failed(),
        "timed_out": outcome.timed_out(),
        "never_sent": outcome.never_sent().len(),
        "never_sent_instances": outcome.never_sent(),
        "max_failures": outcome.max_failures.map(|m| m.to_string()),
        "stopped": outcome.stopped(),
        "success": outcome.all_succeeded(),
    })
}
