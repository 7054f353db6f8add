//! The metrics a heartbeat carries: the process-wide sample, or the application's own sampler
//! on a blocking thread, never blocking the node task.

use std::time::Duration;

use futures_util::FutureExt as _;
use subnodesync_core::{Node, NodeError};
use subnodesync_sysinfo::{Refresh, Sample, SharedSampler};

use super::{Driver, Then};
use crate::inbox::Msg;
use crate::runtime::Runtime;
use crate::settings::SampleSource;
use crate::time::unix_micros;

/// How old the process-wide sample may be when a heartbeat goes out.
const SHARED_SAMPLE_MAX_AGE: Duration = Duration::from_secs(1);

impl<R: Runtime> Driver<'_, R> {
    /// Queues a heartbeat with `sample` and the custom metrics.
    pub(super) fn heartbeat(&mut self, node: &mut Node<'_>, sample: Sample) {
        let now = self.clock.now();
        // Re-anchor to UTC at every heartbeat, so a long-running node follows clock corrections
        // (NTP) instead of drifting with the monotonic clock.
        node.set_wall_clock(now, unix_micros());
        match self.metrics.with_metrics(&sample, |m| node.send_heartbeat(now, m)) {
            Ok(true) => tracing::trace!(?sample, "heartbeat queued"),
            Ok(false) => tracing::debug!("offline: heartbeat skipped"),
            Err(NodeError::Stopped) => {}
            Err(e) => tracing::warn!(error = %e, "heartbeat not sent"),
        }
    }

    /// Gets the metrics for a due heartbeat without blocking the runtime: the shared sample at
    /// once when there is one, otherwise a sample from a blocking thread, sent back as a
    /// message.
    pub(super) fn start_sample(&mut self) -> Then {
        match self.sampler {
            SampleSource::Shared => {
                let shared = SharedSampler::global();
                let (latest, refresh) = shared.latest(SHARED_SAMPLE_MAX_AGE);
                match (latest, refresh) {
                    (Some(sample), refresh) => {
                        // Stale by at most a second: this heartbeat uses it, the next a new one.
                        if let Some(refresh) = refresh {
                            R::spawn(R::unblock(move || refresh.run()).map(drop));
                        }
                        Then::Heartbeat(sample)
                    }
                    // The process's first sample: this heartbeat waits for it.
                    (None, refresh) => {
                        let take = move || refresh.map_or_else(|| shared.sample(SHARED_SAMPLE_MAX_AGE), Refresh::run);
                        let tx = self.inbox.clone();
                        R::spawn(async move {
                            let sample = R::unblock(take).await.unwrap_or_default();
                            tx.send(Msg::Sampled(sample));
                        });
                        Then::Nothing
                    }
                }
            }
            SampleSource::Own(slot) => {
                // Out taking the previous sample, which will serve this heartbeat.
                let Some(mut sampler) = slot.take() else { return Then::Nothing };
                let tx = self.inbox.clone();
                R::spawn(async move {
                    let sampled = R::unblock(move || {
                        let sample = sampler.sample();
                        (sampler, sample)
                    })
                    .await;
                    let (sampler, sample) = match sampled {
                        Some((sampler, sample)) => (Some(sampler), sample),
                        None => (None, Sample::default()),
                    };
                    tx.send(Msg::SamplerBack(sampler));
                    tx.send(Msg::Sampled(sample));
                });
                Then::Nothing
            }
        }
    }
}

/// Takes the process's first shared sample if nobody has yet, so that the nodes' heartbeats
/// find one ready instead of each waiting on a blocking thread.
pub(crate) async fn prime_shared_sample<R: Runtime>() {
    if let (None, Some(refresh)) = SharedSampler::global().latest(SHARED_SAMPLE_MAX_AGE) {
        let _ = R::unblock(move || refresh.run()).await;
    }
}
