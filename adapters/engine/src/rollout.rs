//! Staged rollouts: one command sent to a target's instances a wave at a time, with a pause
//! between waves, stopping before the next wave once too many have failed (AWS IoT Jobs'
//! rollout and abort settings, for one command).
//!
//! Each wave is a request of its own, sent as [`Engine::send_with_progress`] sends one (same
//! timeout, retries and result handling), with a request id of its own: the rollout's id
//! followed by `-w` and the wave's number. A result that arrives after its wave timed out then
//! cannot be counted for the next wave, the history keeps one command row per wave (with the
//! instances it expected and its attempts), and `subnode cancel` can name one wave. The history
//! ties the waves together by the rollout id and wave number stored with each command.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::engine::Engine;
use crate::error::Error;
use crate::record::{ResultRecord, Wave};
use crate::send::{self, Route, SendOutcome, SendRequest};
use crate::target::{Selector, Target};

/// A number of instances, or a percentage of them: how `--rollout` and `--max-failures` are
/// given (`N` or `N%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Portion {
    amount: u32,
    percent: bool,
}

impl Portion {
    /// `n` instances.
    pub fn count(n: u32) -> Self {
        Self { amount: n, percent: false }
    }

    /// `p` percent of the instances, from 1 to 100.
    pub fn percent(p: u32) -> Result<Self, PortionError> {
        if (1..=100).contains(&p) {
            Ok(Self { amount: p, percent: true })
        } else {
            Err(PortionError::PercentOutOfRange(p))
        }
    }

    /// How many of `total` instances this is, a percentage rounded up.
    pub fn of(self, total: usize) -> usize {
        let amount = usize::try_from(self.amount).unwrap_or(usize::MAX);
        if self.percent {
            total.saturating_mul(amount).div_ceil(100)
        } else {
            amount
        }
    }

    /// Whether `n` of `total` instances is more than this portion; a percentage is compared
    /// exactly, unrounded (3 of 10 is more than 25%).
    pub fn is_exceeded_by(self, n: usize, total: usize) -> bool {
        let amount = usize::try_from(self.amount).unwrap_or(usize::MAX);
        if self.percent {
            n.saturating_mul(100) > total.saturating_mul(amount)
        } else {
            n > amount
        }
    }
}

impl FromStr for Portion {
    type Err = PortionError;

    /// Reads `N` (a whole number of instances) or `N%` (1% to 100%).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (number, percent) = match text.strip_suffix('%') {
            Some(number) => (number, true),
            None => (text, false),
        };
        // Digits only: no sign, no spaces, no fraction.
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PortionError::NotAPortion(text.to_owned()));
        }
        let amount: u32 = number.parse().map_err(|_| PortionError::NotAPortion(text.to_owned()))?;
        if percent {
            Self::percent(amount)
        } else {
            Ok(Self::count(amount))
        }
    }
}

impl fmt::Display for Portion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, if self.percent { "%" } else { "" })
    }
}

/// How many instances each wave of a rollout takes: a [`Portion`] that is never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveSize(Portion);

impl WaveSize {
    /// `portion` as a wave size; zero instances is no wave.
    pub fn new(portion: Portion) -> Result<Self, PortionError> {
        if portion.amount == 0 {
            return Err(PortionError::EmptyWave);
        }
        Ok(Self(portion))
    }

    /// How many of `total` instances a wave takes: at least one (a percentage rounds up).
    pub fn of(self, total: usize) -> usize {
        self.0.of(total).max(1)
    }
}

impl FromStr for WaveSize {
    type Err = PortionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::new(text.parse()?)
    }
}

impl fmt::Display for WaveSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why `N` or `N%` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortionError {
    /// Neither a whole number nor a whole number followed by `%`: the text given.
    NotAPortion(String),
    /// A percentage outside 1% to 100%: the number given.
    PercentOutOfRange(u32),
    /// A wave of no instances.
    EmptyWave,
}

impl fmt::Display for PortionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAPortion(text) => write!(f, "{text:?}: expected N or N% (a whole number, or a percentage)"),
            Self::PercentOutOfRange(p) => write!(f, "{p}%: a percentage must be 1% to 100%"),
            Self::EmptyWave => f.write_str("a wave takes at least one instance"),
        }
    }
}

impl std::error::Error for PortionError {}

/// A command to send in waves.
#[derive(Debug, Clone)]
pub struct RolloutRequest {
    /// The command, its target, parameters, timeout and retries (for each wave), as `send`
    /// takes them. Its `request_id`, if set, is the rollout's id; each wave's request id is the
    /// rollout's id followed by `-w` and the wave's number, and must fit in 64 characters.
    pub send: SendRequest,
    /// How many instances each wave takes.
    pub wave: WaveSize,
    /// How long to wait after a wave's results before sending the next wave.
    pub pause: Duration,
    /// The failures (failed results and timeouts, over every wave sent) that the rollout
    /// tolerates: with more, it stops before the next wave. `None` sends every wave.
    pub max_failures: Option<Portion>,
}

impl RolloutRequest {
    /// `send` in waves of `wave`, no pause, no failure threshold.
    pub fn new(send: SendRequest, wave: WaveSize) -> Self {
        Self { send, wave, pause: Duration::ZERO, max_failures: None }
    }
}

/// What a rollout reports as it goes, to the `progress` of [`Engine::rollout`].
#[derive(Debug)]
#[non_exhaustive]
pub enum RolloutEvent<'a> {
    /// Wave `number` of `waves` is about to go to `instances`, as request `request_id`.
    Wave {
        /// The wave's number, from 1.
        number: u32,
        /// How many waves the rollout has if none is stopped.
        waves: usize,
        /// The wave's request id.
        request_id: &'a str,
        /// The instances it goes to.
        instances: &'a [String],
    },
    /// A result or progress update of the current wave arrived.
    Result {
        /// The result or progress update.
        result: &'a ResultRecord,
        /// How many of the wave have sent their final result so far.
        answered: usize,
    },
    /// The current wave is over: every instance answered, or the timeout passed.
    WaveDone(&'a SendOutcome),
    /// Waiting this long before the next wave.
    Pause(Duration),
}

/// What came of a rollout.
#[derive(Debug, Clone)]
pub struct RolloutOutcome {
    /// The rollout's id, which every wave's request id starts with.
    pub rollout_id: String,
    /// Every instance the target resolved to, in the order the waves take them.
    pub instances: Vec<String>,
    /// How many instances each wave takes (the last may take fewer).
    pub wave_size: usize,
    /// Each wave sent, in order.
    pub waves: Vec<SendOutcome>,
    /// The failures the rollout tolerated (as the request gave them).
    pub max_failures: Option<Portion>,
}

impl RolloutOutcome {
    /// How many instances the command was sent to.
    pub fn sent(&self) -> usize {
        self.waves.iter().map(|w| w.expected.len()).sum()
    }

    /// How many instances answered with success.
    pub fn succeeded(&self) -> usize {
        self.sent() - self.failed()
    }

    /// How many instances answered with failure or did not answer in time.
    pub fn failed(&self) -> usize {
        self.waves.iter().map(wave_failures).sum()
    }

    /// How many instances did not answer in time (counted in [`failed`](Self::failed) too).
    pub fn timed_out(&self) -> usize {
        self.waves.iter().map(|w| w.timed_out.len()).sum()
    }

    /// The instances the command never went to: the rollout stopped before their wave.
    pub fn never_sent(&self) -> &[String] {
        self.instances.get(self.sent()..).unwrap_or_default()
    }

    /// Whether the rollout stopped at its failure threshold, leaving instances unsent.
    pub fn stopped(&self) -> bool {
        !self.never_sent().is_empty()
    }

    /// Whether every instance was sent the command and answered with success.
    pub fn all_succeeded(&self) -> bool {
        self.succeeded() == self.instances.len()
    }
}

/// The instances of a wave that failed or did not answer in time.
fn wave_failures(wave: &SendOutcome) -> usize {
    wave.expected.iter().filter(|id| !wave.results.get(*id).is_some_and(|r| r.success)).count()
}

impl Engine {
    /// Sends `request.send` to its target's instances in waves of `request.wave`, waiting for
    /// each wave's results (its timeout and retries are the request's) and `request.pause`
    /// between waves; before each wave after the first, stops if more instances have failed or
    /// timed out than `request.max_failures` allows (a percentage is of every instance).
    ///
    /// The target is resolved once, at the start, as [`send`](Self::send) resolves it, except
    /// that `NODE/*` goes to each instance the registry knows on its own control topic rather
    /// than as one broadcast; the waves take the instances in instance id order. `progress` hears of each wave, result and pause as it happens.
    pub async fn rollout(
        &self,
        request: &RolloutRequest,
        mut progress: impl FnMut(RolloutEvent<'_>),
    ) -> Result<RolloutOutcome, Error> {
        let first = &request.send;
        send::checked_parameters(first)?;
        let prefix = self.topic_prefix();
        // A wave is a part of the fleet, so never a name's broadcast.
        let one_by_one = match &first.target {
            Target::Node(node) => Target::Select(Selector { node_name: Some(node.clone()), ..Selector::default() }),
            other => other.clone(),
        };
        let everyone = self.with_registry(|registry| Route::resolve(&one_by_one, registry, prefix))?;
        let mut pairs: Vec<(String, String)> = everyone.expected.into_iter().zip(everyone.topics).collect();
        // Waves in instance id order, whichever order the registry learnt of the instances.
        pairs.sort_unstable();
        let (instances, topics): (Vec<String>, Vec<String>) = pairs.into_iter().unzip();
        let target = first.target.describe(prefix);
        let rollout_id = send::request_id(first.request_id.as_deref())?;
        let wave_size = request.wave.of(instances.len());
        let waves = instances.len().div_ceil(wave_size);
        // The longest wave id is checked before anything is sent.
        send::request_id(Some(&format!("{rollout_id}-w{waves}")))?;

        let total = instances.len();
        let mut outcome =
            RolloutOutcome { rollout_id, instances, wave_size, waves: Vec::new(), max_failures: request.max_failures };
        for (n, (topics, expected)) in topics.chunks(wave_size).zip(outcome.instances.chunks(wave_size)).enumerate() {
            if n > 0 {
                if request.max_failures.is_some_and(|max| max.is_exceeded_by(outcome.failed(), total)) {
                    break;
                }
                if !request.pause.is_zero() {
                    progress(RolloutEvent::Pause(request.pause));
                    tokio::time::sleep(request.pause).await;
                }
            }
            let number = u32::try_from(n + 1).unwrap_or(u32::MAX);
            let request_id = format!("{}-w{number}", outcome.rollout_id);
            progress(RolloutEvent::Wave { number, waves, request_id: &request_id, instances: expected });
            let route = Route {
                topics: topics.to_vec(),
                expected: expected.to_vec(),
                broadcast: false,
                target: target.clone(),
                wave: Some(Wave { rollout_id: outcome.rollout_id.clone(), number }),
            };
            let wave = SendRequest { request_id: Some(request_id), ..first.clone() };
            let sent = self
                .send_routed(&wave, Some(route), |result, answered| {
                    progress(RolloutEvent::Result { result, answered });
                })
                .await?;
            progress(RolloutEvent::WaveDone(&sent));
            outcome.waves.push(sent);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn portions_read_as_the_flags_take_them() {
        assert_eq!("3".parse(), Ok(Portion::count(3)));
        assert_eq!("0".parse(), Ok(Portion::count(0)));
        assert_eq!("25%".parse(), Portion::percent(25));
        assert_eq!("100%".parse::<Portion>().map(|p| p.to_string()), Ok("100%".to_owned()));
        for bad in ["", "%", "-1", "+3", "2.5", "3 ", "x%", "99999999999"] {
            assert_eq!(bad.parse::<Portion>(), Err(PortionError::NotAPortion(bad.into())), "{bad:?}");
        }
        assert_eq!("0%".parse::<Portion>(), Err(PortionError::PercentOutOfRange(0)));
        assert_eq!("101%".parse::<Portion>(), Err(PortionError::PercentOutOfRange(101)));
        assert_eq!("0".parse::<WaveSize>(), Err(PortionError::EmptyWave));
        assert_eq!("2".parse::<WaveSize>().map(|w| w.to_string()), Ok("2".to_owned()));
        assert_eq!(PortionError::EmptyWave.to_string(), "a wave takes at least one instance");
        assert_eq!(PortionError::PercentOutOfRange(0).to_string(), "0%: a percentage must be 1% to 100%");
    }

    #[test]
    fn a_wave_of_a_percentage_rounds_up_and_takes_at_least_one_instance() {
        let wave = |text: &str, total| text.parse::<WaveSize>().unwrap().of(total);
        assert_eq!(wave("30%", 10), 3);
        assert_eq!(wave("25%", 10), 3);
        assert_eq!(wave("1%", 10), 1);
        assert_eq!(wave("100%", 10), 10);
        assert_eq!(wave("4", 10), 4);
        assert_eq!(wave("50", 10), 50, "a wave larger than the fleet is the whole fleet");
    }

    #[test]
    fn a_failure_threshold_is_exceeded_only_by_more_failures_than_it_allows() {
        let max = |text: &str| text.parse::<Portion>().unwrap();
        assert!(!max("2").is_exceeded_by(2, 10));
        assert!(max("2").is_exceeded_by(3, 10));
        assert!(max("0").is_exceeded_by(1, 10));
        // 25% of 10 is 2.5: two failures are within it, three are not.
        assert!(!max("25%").is_exceeded_by(2, 10));
        assert!(max("25%").is_exceeded_by(3, 10));
        assert!(!max("100%").is_exceeded_by(10, 10));
    }

    fn result(instance: &str, success: bool) -> ResultRecord {
        ResultRecord {
            request_id: "r".into(),
            instance_id: instance.into(),
            node_name: "a".into(),
            command: "c".into(),
            success,
            message: String::new(),
            data: None,
            state: "done".into(),
            timestamp: String::new(),
            received_ms: 0,
        }
    }

    fn wave(answers: &[(&str, bool)], silent: &[&str]) -> SendOutcome {
        let results: BTreeMap<String, ResultRecord> =
            answers.iter().map(|(id, ok)| ((*id).to_owned(), result(id, *ok))).collect();
        let mut expected: Vec<String> = results.keys().cloned().collect();
        expected.extend(silent.iter().map(|s| (*s).to_owned()));
        SendOutcome {
            request_id: "r".into(),
            expected,
            results,
            timed_out: silent.iter().map(|s| (*s).to_owned()).collect(),
            attempts: 1,
        }
    }

    #[test]
    fn an_outcome_counts_failures_and_timeouts_and_the_instances_never_sent() {
        let instances: Vec<String> = (1..=6).map(|n| format!("a-{n}")).collect();
        let outcome = RolloutOutcome {
            rollout_id: "r".into(),
            instances: instances.clone(),
            wave_size: 2,
            waves: vec![wave(&[("a-1", true), ("a-2", true)], &[]), wave(&[("a-3", false)], &["a-4"])],
            max_failures: Some(Portion::count(1)),
        };
        assert_eq!((outcome.sent(), outcome.succeeded(), outcome.failed(), outcome.timed_out()), (4, 2, 2, 1));
        assert_eq!(outcome.never_sent(), &instances[4..]);
        assert!(outcome.stopped() && !outcome.all_succeeded());
    }
}
