//! Entry point for the engine's fuzz target (`fuzz/` beside this crate) and the test replaying
//! its committed seeds. Not a public API: only the `_fuzzing` feature exposes it, and it may
//! change at any time.

use subnodesync_core::{HeartbeatView, RegisterView, ResultView, StatusView};

use crate::registry::{Ingested, Limits, Registry, Status};

/// The topic prefix of every message [`ingest_sequence`] feeds.
pub const PREFIX: &str = "subnodesync";

/// Who a message comes from, picked by one input byte: few, so messages meet on one instance,
/// with names that prefix each other and ids that are not their own.
const WHO: [(&str, &str); 9] = [
    ("app", "app-h-1"),
    ("app", "app-h-2"),
    ("app-x", "app-x-h-1"),
    // Also reads as an id of `app`: whichever name registers it first keeps it.
    ("app", "app-x-h-1"),
    ("app-x", "app-h-1"),
    ("app", "app-"),
    ("app", "app"),
    ("", "-h-1"),
    ("é", "é-h\u{202e}-1"),
];

/// The limits the fuzzed registry runs under: small enough that inputs reach them, so the
/// refusals are fed too.
const LIMITS: Limits = Limits { max_instances: 6, max_stored_json: 160 };

/// A registry fed one step at a time and checked after each; a broken invariant panics.
#[derive(Debug)]
pub struct Fleet {
    registry: Registry,
}

impl Default for Fleet {
    fn default() -> Self {
        let mut registry = Registry::default();
        // Heartbeat events on, so that path is fed too.
        registry.heartbeat_events = true;
        registry.limits = LIMITS;
        Self { registry }
    }
}

impl Fleet {
    /// The registry as the steps so far left it.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Ingests one message under [`PREFIX`] and checks what it did.
    pub fn message(&mut self, topic: &str, payload: &[u8], now_ms: i64) {
        let before = self.counts();
        let outcome = self.registry.ingest(PREFIX, topic, payload, now_ms, false);
        if let Ok(ingested) = &outcome {
            let levels: Option<Vec<&str>> =
                topic.strip_prefix(PREFIX).and_then(|t| t.strip_prefix('/')).map(|t| t.split('/').collect());
            let Some(&[node, instance, kind]) = levels.as_deref() else {
                panic!("ingested {topic:?}, not a node topic under {PREFIX:?}");
            };
            // Empty payloads (deregister, cleared status) name nobody.
            if !payload.is_empty() {
                assert_eq!(
                    claimed(kind, payload),
                    Some((node, instance)),
                    "ingested {topic:?} naming another instance"
                );
            }
            if let Some(known) = self.registry.get(instance) {
                assert_eq!(known.node_name, node, "ingested {topic:?} for another name's instance");
            }
            // What `watch` prints and `--json` writes must come out of anything ingested.
            match ingested {
                Ingested::Quiet => {}
                Ingested::Events(events) => {
                    for e in events {
                        let _ = (e.to_string(), e.to_json());
                    }
                }
                Ingested::Result(r) => {
                    let _ = (r.to_string(), r.to_json());
                }
            }
        }
        self.assert_grown(&before);
        let held = self.registry.instances().len();
        assert!(held <= LIMITS.max_instances, "{held} instances, over the limit of {}", LIMITS.max_instances);
        for inst in self.registry.instances() {
            for json in [&inst.register_json, &inst.metrics_json].into_iter().flatten() {
                assert!(
                    json.len() <= LIMITS.max_stored_json,
                    "kept {} bytes of JSON for {}",
                    json.len(),
                    inst.instance_id
                );
            }
        }
    }

    /// Marks instances silent since `silent_since_ms` missing.
    pub fn mark_missing(&mut self, silent_since_ms: i64, now_ms: i64) {
        let before = self.counts();
        self.registry.mark_missing(silent_since_ms, now_ms);
        self.assert_grown(&before);
    }

    /// Prunes dead instances older than `before_ms`: the one step that may forget instances.
    pub fn prune(&mut self, before_ms: i64) {
        let count = self.registry.instances().len();
        let gone = self.registry.prune(before_ms);
        assert_eq!(count, self.registry.instances().len() + gone.len(), "prune lost or made instances");
        for inst in &gone {
            let gone = inst.status != Status::Online;
            assert!(gone && inst.status_changed_ms < before_ms, "pruned {inst:?} before {before_ms}");
        }
        self.registry.assert_consistent();
    }

    /// Takes the changed instances, as a flush to the database does.
    pub fn flush(&mut self) {
        let before = self.counts();
        self.registry.take_dirty();
        self.assert_grown(&before);
    }

    /// Every instance's id and heartbeat count, in order.
    fn counts(&self) -> Vec<(String, u64)> {
        self.registry.instances().iter().map(|i| (i.instance_id.clone(), i.heartbeats)).collect()
    }

    /// The registry is consistent and, since `before`, only gained instances and heartbeats.
    fn assert_grown(&self, before: &[(String, u64)]) {
        self.registry.assert_consistent();
        let after = self.counts();
        assert!(after.len() >= before.len(), "instances disappeared: {before:?} -> {after:?}");
        for ((id, beats), (id_after, beats_after)) in before.iter().zip(&after) {
            assert!(id == id_after && beats <= beats_after, "{id:?} changed place or lost heartbeats: {after:?}");
        }
    }
}

/// Applies `data`, read as steps, to a fresh [`Fleet`], checking it after every step.
///
/// One step per line, its first byte saying what; `n` below is the next byte less `'0'`:
/// - `r`, `h`, `s`, `x`, then a byte picking who, then the payload: a register, heartbeat,
///   status or result from a few node names and instance ids, `$N` and `$I` in the payload
///   standing for that name and id;
/// - `t`, a topic, a space, the payload: a message on any topic;
/// - `m` and `p`, then `n`: mark missing what was silent, prune what died, `n` seconds ago;
/// - `f`: flush; `c`, then `n`: the clock moves `n` seconds (back, below `'0'`).
///
/// Every line moves the clock one second on; other lines do nothing else.
pub fn ingest_sequence(data: &[u8]) -> Fleet {
    let mut fleet = Fleet::default();
    // 2024-01-01T12:00:00Z, the time in PROTOCOL.md's payloads.
    let mut now_ms: i64 = 1_704_110_400_000;
    for line in data.split(|&b| b == b'\n') {
        now_ms += 1000;
        let Some((&op, rest)) = line.split_first() else { continue };
        let arg = rest.first().copied().unwrap_or(b'0');
        let secs_ms = (i64::from(arg) - i64::from(b'0')) * 1000;
        match op {
            b'r' | b'h' | b's' | b'x' => {
                let kind = match op {
                    b'r' => "register",
                    b'h' => "heartbeat",
                    b's' => "status",
                    _ => "result",
                };
                let (node, instance) = WHO[usize::from(arg.wrapping_sub(b'0')) % WHO.len()];
                let payload = fill(rest.get(1..).unwrap_or_default(), node, instance);
                fleet.message(&format!("{PREFIX}/{node}/{instance}/{kind}"), &payload, now_ms);
            }
            b't' => {
                let mut parts = rest.splitn(2, |&b| b == b' ');
                let (topic, payload) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                fleet.message(&String::from_utf8_lossy(topic), payload, now_ms);
            }
            b'm' => fleet.mark_missing(now_ms - secs_ms, now_ms),
            b'p' => fleet.prune(now_ms - secs_ms),
            b'f' => fleet.flush(),
            b'c' => now_ms += secs_ms,
            _ => {}
        }
    }
    fleet
}

/// `payload` with `$N` and `$I` replaced by `node` and `instance`.
fn fill(payload: &[u8], node: &str, instance: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut rest = payload;
    while let Some((&b, tail)) = rest.split_first() {
        let name = match (b, tail.first()) {
            (b'$', Some(b'N')) => node,
            (b'$', Some(b'I')) => instance,
            _ => {
                out.push(b);
                rest = tail;
                continue;
            }
        };
        out.extend_from_slice(name.as_bytes());
        rest = tail.get(1..).unwrap_or_default();
    }
    out
}

/// The node name and instance id a payload of this kind gives, if it reads as one.
fn claimed<'p>(kind: &str, payload: &'p [u8]) -> Option<(&'p str, &'p str)> {
    match kind {
        "register" => RegisterView::parse(payload).ok().map(|v| (v.node_name, v.instance_id)),
        "heartbeat" => HeartbeatView::parse(payload).ok().map(|v| (v.node_name, v.instance_id)),
        "status" => StatusView::parse(payload).ok().map(|v| (v.node_name, v.instance_id)),
        "result" => ResultView::parse(payload).ok().map(|v| (v.node_name, v.instance_id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The committed seeds of `fuzz/`, sorted by name.
    fn seeds() -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/engine_ingest");
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut seeds: Vec<_> = entries
            .map(|entry| {
                let path = entry.unwrap().path();
                (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap())
            })
            .collect();
        seeds.sort();
        seeds
    }

    #[test]
    fn every_committed_fuzz_seed_replays_without_a_failure() {
        let seeds = seeds();
        assert!(seeds.len() >= 10, "{} seeds", seeds.len());
        for (name, data) in &seeds {
            // The captured output names the seed that failed.
            println!("seed {name}");
            ingest_sequence(data);
        }
    }

    #[test]
    fn the_session_seed_reaches_a_registered_beating_instance_and_its_clean_stop() {
        let (_, data) = seeds().into_iter().find(|(name, _)| name == "session").expect("a session seed");
        let fleet = ingest_sequence(&data);
        let inst = fleet.registry().get("app-h-1").expect("app-h-1 ingested");
        assert_eq!((inst.status, inst.registered, inst.heartbeats), (Status::Offline, false, 2));
        assert_eq!(inst.version, "1.0.0");
    }
}
