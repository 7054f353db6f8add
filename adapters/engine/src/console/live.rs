//! What changes as it happens: the event stream, the fleet table's live rows, and each
//! instance's CPU and memory over the last hour for its chart.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::{json, Value};
use tokio::sync::broadcast::{self, error::RecvError};

use super::Shared;
use crate::desired::DesiredSync;
use crate::engine::{lock, now_ms};
use crate::registry::Instance;

/// How often the changed rows go out.
const TICK: Duration = Duration::from_secs(1);
/// One chart sample per instance per this many milliseconds...
const SAMPLE_EVERY_MS: i64 = 30_000;
/// ...and an hour of them: 12 bytes each, 1.4 KiB an instance.
const SAMPLES: usize = 120;

/// One point of an instance's chart, packed: a chart is kept for every instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// When the heartbeat it comes from arrived, Unix seconds.
    at_s: u32,
    /// CPU, hundredths of a percent.
    pub(crate) cpu_centipercent: u32,
    /// Resident memory, MiB (saturating at 4 PiB).
    pub(crate) memory_mb: u32,
}

impl Sample {
    /// When the heartbeat it comes from arrived, Unix milliseconds.
    pub(crate) fn at_ms(&self) -> i64 {
        i64::from(self.at_s) * 1000
    }
}

/// The console's live state.
#[derive(Debug)]
pub(crate) struct Live {
    /// The rows changed in the last tick, as one `instances` event, for subscribers that asked.
    rows: broadcast::Sender<Arc<str>>,
    /// The last hour of samples by instance id.
    trends: Mutex<HashMap<String, VecDeque<Sample>>>,
    /// What each instance's row last said of its desired state: a report changes the row of an
    /// instance that may send nothing else (a stopped one, say).
    synced: Mutex<HashMap<String, DesiredSync>>,
}

impl Live {
    /// Nothing seen yet.
    pub(crate) fn new() -> Self {
        Self { rows: broadcast::channel(16).0, trends: Mutex::new(HashMap::new()), synced: Mutex::new(HashMap::new()) }
    }

    /// The last hour of `instance_id`'s samples, oldest first.
    pub(crate) fn trend(&self, instance_id: &str) -> Vec<Sample> {
        lock(&self.trends).get(instance_id).map(|t| t.iter().copied().collect()).unwrap_or_default()
    }

    /// Takes a sample of every instance whose newest heartbeat is at least a spacing after its
    /// last sample, and forgets instances the registry no longer has.
    fn sample(&self, instances: &[Instance]) {
        let mut trends = lock(&self.trends);
        for inst in instances {
            let (Some(at_ms), Some(cpu), Some(memory)) =
                (inst.last_heartbeat_ms, inst.cpu_centipercent, inst.memory_mb)
            else {
                continue;
            };
            let trend = match trends.get_mut(inst.instance_id.as_str()) {
                Some(trend) => trend,
                None => trends.entry(inst.instance_id.clone()).or_insert_with(|| VecDeque::with_capacity(SAMPLES)),
            };
            if trend.back().is_some_and(|last| at_ms - last.at_ms() < SAMPLE_EVERY_MS) {
                continue;
            }
            if trend.len() == SAMPLES {
                trend.pop_front();
            }
            let at_s = u32::try_from(at_ms / 1000).unwrap_or(0);
            trend.push_back(Sample {
                at_s,
                cpu_centipercent: cpu,
                memory_mb: u32::try_from(memory).unwrap_or(u32::MAX),
            });
        }
        if trends.len() > instances.len() {
            let known: std::collections::HashSet<&str> = instances.iter().map(|i| i.instance_id.as_str()).collect();
            trends.retain(|id, _| known.contains(id.as_str()));
        }
    }
}

/// The fleet table's columns of one instance: what a heartbeat, a status change or a desired
/// document or report moves.
pub(crate) fn row(inst: &Instance, sync: DesiredSync, now_ms: i64) -> Value {
    json!({
        "desired_version": sync.desired_version,
        "reported_version": sync.reported_version,
        "in_sync": sync.in_sync,
        "instance_id": inst.instance_id,
        "node_name": inst.node_name,
        "status": inst.status.as_str(),
        "version": inst.version,
        "hostname": inst.hostname,
        "pid": inst.pid,
        "uptime": inst.uptime,
        "cpu_percent": inst.cpu_centipercent.map(|c| f64::from(c) / 100.0),
        "memory_mb": inst.memory_mb,
        "heartbeats": inst.heartbeats,
        "last_heartbeat_age_ms": inst.last_heartbeat_ms.map(|t| now_ms.saturating_sub(t)),
    })
}

/// Every tick: the rows of instances heard from or changed since the last one, to the
/// subscribers that want them, and the chart samples.
pub(crate) async fn run(shared: Shared) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since = now_ms();
    loop {
        tick.tick().await;
        let now = now_ms();
        let wanted = shared.live.rows.receiver_count() > 0;
        // Copies out under the registry lock; the JSON is made after it is released.
        let (changed, all) = shared.engine.with_registry(|registry| {
            let instances = registry.instances();
            let changed: Vec<(Instance, DesiredSync)> = if wanted {
                let mut sent = lock(&shared.live.synced);
                if sent.len() > instances.len() {
                    sent.retain(|id, _| registry.get(id).is_some());
                }
                let mut changed = Vec::new();
                for i in instances {
                    let sync = shared.engine.desired_sync(&i.node_name, &i.instance_id);
                    let moved = sent.get(&i.instance_id) != Some(&sync);
                    if moved {
                        sent.insert(i.instance_id.clone(), sync);
                    }
                    if moved || i.last_seen_ms >= since || i.status_changed_ms >= since {
                        changed.push((i.clone(), sync));
                    }
                }
                changed
            } else {
                Vec::new()
            };
            shared.live.sample(instances);
            (changed, instances.len())
        });
        since = now;
        if !changed.is_empty() {
            let rows: Vec<Value> = changed.iter().map(|(i, sync)| row(i, *sync, now)).collect();
            let event = json!({"event": "instances", "instances": rows, "total": all});
            let _ = shared.live.rows.send(Arc::from(event.to_string()));
        }
    }
}

/// `GET /api/events[?instances=1]`: server-sent events, one JSON object per `data:` line, the
/// objects `subnode watch --json` prints; with `instances=1` also, every second, an `instances`
/// event with the fleet table's rows that changed.
pub(crate) async fn events(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let fleet = shared.engine.events();
    let rows = query.get("instances").is_some_and(|v| v == "1" || v == "true").then(|| shared.live.rows.subscribe());
    let stopping = shared.stopping.clone();
    let stream =
        futures_util::stream::unfold((fleet, rows, stopping), |(mut fleet, mut rows, mut stopping)| async move {
            let next_row = async {
                match rows.as_mut() {
                    Some(rows) => rows.recv().await.map(|text| text.to_string()),
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                event = fleet.recv() => event.map(|event| event.to_json().to_string()),
                row = next_row => row,
                // The console is stopping: end the stream, so the server can finish.
                _ = stopping.wait_for(|stop| *stop) => return None,
            };
            let data = match next {
                Ok(data) => data,
                Err(RecvError::Lagged(skipped)) => json!({"event": "lagged", "skipped": skipped}).to_string(),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(Event::default().data(data)), (fleet, rows, stopping)))
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tests::instance;

    fn beating(id: &str, at_ms: i64, cpu: u32) -> Instance {
        Instance { last_heartbeat_ms: Some(at_ms), cpu_centipercent: Some(cpu), memory_mb: Some(64), ..instance(id) }
    }

    #[test]
    fn a_trend_keeps_one_sample_per_spacing_an_hour_of_them_and_forgets_pruned_instances() {
        let live = Live::new();
        for n in 0..(SAMPLES as i64 + 10) * 6 {
            // Heartbeats every 5 s: one in six is sampled.
            live.sample(&[beating("a-h-1", n * 5_000, 100), beating("a-h-2", n * 5_000, 200)]);
        }
        let trend = live.trend("a-h-1");
        assert_eq!(trend.len(), SAMPLES);
        assert!(trend.windows(2).all(|w| w[1].at_ms() - w[0].at_ms() == SAMPLE_EVERY_MS));
        live.sample(&[beating("a-h-2", 4_000_000_000_000, 1)]);
        assert!(live.trend("a-h-1").is_empty());
        assert_eq!(live.trend("a-h-2").last().map(|s| s.cpu_centipercent), Some(1));
        assert!(live.trend("nobody").is_empty());
    }
}
