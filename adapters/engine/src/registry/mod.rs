//! The fleet as the engine knows it: what every instance last said, updated message by message
//! without I/O, so ingest is a parse and a few field copies (see `benches/ingest.rs`).

mod instance;
mod merge;

use std::collections::HashMap;

use subnodesync_core::{
    HeartbeatView, RegisterView, ResultView, StatusView, Unescaped, INSTANCE_ID_MAX, NODE_NAME_MAX, REQUEST_ID_MAX,
};

use crate::error::IngestError;
use crate::event::FleetEvent;
use crate::record::ResultRecord;

pub use instance::{Instance, Status};

/// What one message did to the registry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ingested {
    /// Nothing anyone needs to hear about.
    Quiet,
    /// Events to publish.
    Events(Vec<FleetEvent>),
    /// A result, to route to whoever waits for it and to record.
    Result(ResultRecord),
}

/// The message kinds a node publishes, from the last topic level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Register,
    Heartbeat,
    Status,
    Result,
}

/// Splits `{prefix}/{node_name}/{instance_id}/{kind}`.
pub(crate) fn split_topic<'t>(prefix: &str, topic: &'t str) -> Option<(&'t str, &'t str, Kind)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let mut levels = rest.split('/');
    let (node, instance, kind) = (levels.next()?, levels.next()?, levels.next()?);
    // Names are 1 to 48 bytes (PROTOCOL.md §3): an empty level names nobody.
    if levels.next().is_some() || node.is_empty() || instance.is_empty() {
        return None;
    }
    let kind = match kind {
        "register" => Kind::Register,
        "heartbeat" => Kind::Heartbeat,
        "status" => Kind::Status,
        "result" => Kind::Result,
        _ => return None,
    };
    Some((node, instance, kind))
}

/// Whether `instance` can be an id of `node`: an instance id is `{node_name}-{hostname}-{pid}`.
pub(crate) fn belongs(node: &str, instance: &str) -> bool {
    instance.strip_prefix(node).and_then(|rest| rest.strip_prefix('-')).is_some_and(|r| !r.is_empty())
}

/// Stores the string a JSON string's escaped contents mean, reusing `target`'s buffer and
/// leaving it alone when nothing changed (the common case on the heartbeat path).
fn set_unescaped(target: &mut String, escaped: &str) {
    if !escaped.contains('\\') {
        if target != escaped {
            escaped.clone_into(target);
        }
        return;
    }
    let meant = Unescaped(escaped).to_string();
    if *target != meant {
        *target = meant;
    }
}

/// What the registry keeps at most, whatever the fleet publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Instances; a message about a new one beyond this is refused.
    pub(crate) max_instances: usize,
    /// Bytes of an instance's register payload or heartbeat `metrics` kept as JSON; a larger one
    /// is ingested for its fields and its JSON not kept.
    pub(crate) max_stored_json: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_instances: 100_000, max_stored_json: 16 * 1024 }
    }
}

/// What the registry refused or left out, since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Refusals {
    /// Messages about new instances refused because the registry was full.
    pub(crate) registry_full: u64,
    /// Register payloads and metrics objects ingested without keeping their JSON.
    pub(crate) json_not_stored: u64,
}

/// The registry: instances in arrival order plus an index by id, and which ones changed.
#[derive(Debug, Default)]
pub struct Registry {
    instances: Vec<Instance>,
    index: HashMap<String, usize>,
    dirty: Vec<usize>,
    /// Send a [`FleetEvent::Heartbeat`] for every heartbeat.
    pub(crate) heartbeat_events: bool,
    pub(crate) limits: Limits,
    refusals: Refusals,
    /// The node's timestamp of the last heartbeat ingested, and when it was ingested: how far
    /// behind the fleet the engine runs.
    latest_heartbeat: (String, i64),
    /// Since when the engine has been listening: silence before it says nothing.
    listening_since: i64,
}

impl Registry {
    /// A registry holding `instances` (as loaded from the database), none of them changed.
    pub(crate) fn from_instances(mut instances: Vec<Instance>) -> Self {
        for inst in &mut instances {
            inst.dirty = false;
        }
        let index = instances.iter().enumerate().map(|(i, inst)| (inst.instance_id.clone(), i)).collect();
        Self { instances, index, ..Self::default() }
    }

    /// The node's timestamp of the last heartbeat ingested (RFC 3339, as sent) and when it was
    /// ingested (Unix milliseconds); `None` before the first.
    pub fn latest_heartbeat(&self) -> Option<(&str, i64)> {
        let (timestamp, at) = &self.latest_heartbeat;
        (!timestamp.is_empty()).then_some((timestamp.as_str(), *at))
    }

    /// What it refused or left out so far.
    pub(crate) fn refusals(&self) -> Refusals {
        self.refusals
    }

    /// Every instance, in the order first seen.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// The instance with this id.
    pub fn get(&self, instance_id: &str) -> Option<&Instance> {
        self.index.get(instance_id).and_then(|&i| self.instances.get(i))
    }

    /// The instance `instance_id`, created if new and there is room, and marked changed: in
    /// its heartbeat columns only, or `whole`.
    fn entry(
        &mut self,
        node_name: &str,
        instance_id: &str,
        now_ms: i64,
        whole: bool,
    ) -> Result<&mut Instance, IngestError> {
        let i = match self.index.get(instance_id) {
            Some(&i) => i,
            None => {
                if self.instances.len() >= self.limits.max_instances {
                    self.refusals.registry_full += 1;
                    return Err(IngestError::RegistryFull);
                }
                let i = self.instances.len();
                self.instances.push(Instance::new(node_name, instance_id, now_ms));
                self.index.insert(instance_id.to_owned(), i);
                self.dirty.push(i);
                i
            }
        };
        // `index` only ever holds positions of `instances` (both are rebuilt together).
        let inst = &mut self.instances[i];
        if !inst.dirty {
            inst.dirty = true;
            self.dirty.push(i);
        }
        inst.whole |= whole;
        Ok(inst)
    }

    /// `json` if it is small enough to keep.
    fn storable<'j>(&self, json: &'j str) -> Option<&'j str> {
        (json.len() <= self.limits.max_stored_json).then_some(json)
    }

    /// Applies one message received on `topic` at `now_ms` (Unix milliseconds). A `retained`
    /// one may be the broker replaying what it holds (at every subscribe): it is not taken as a
    /// sighting, and a replayed status changes only what it says differently. (A register in
    /// place is news either way: after a broker restart, replays are registrations made since.)
    pub(crate) fn ingest(
        &mut self,
        prefix: &str,
        topic: &str,
        payload: &[u8],
        now_ms: i64,
        retained: bool,
    ) -> Result<Ingested, IngestError> {
        let (node, instance, kind) = split_topic(prefix, topic).ok_or(IngestError::Topic)?;
        // Longer names come from no node; refusing them also keeps every key the database
        // indexes within what an index entry holds.
        if node.len() > NODE_NAME_MAX || instance.len() > INSTANCE_ID_MAX {
            return Err(IngestError::TooLong);
        }
        // One name's publisher cannot speak for another name's instances, nor take over an id
        // another name registered first.
        let taken = self.get(instance).is_some_and(|known| known.node_name != node);
        if !belongs(node, instance) || taken {
            return Err(IngestError::ForeignInstance);
        }
        let check = |node_name: &str, instance_id: &str| {
            if node_name == node && instance_id == instance {
                Ok(())
            } else {
                Err(IngestError::TopicMismatch)
            }
        };
        match kind {
            Kind::Heartbeat => {
                let hb = HeartbeatView::parse(payload)?;
                check(hb.node_name, hb.instance_id)?;
                let heartbeat_events = self.heartbeat_events;
                let metrics = self.storable(hb.metrics.as_raw().as_str());
                let inst = self.entry(node, instance, now_ms, false)?;
                inst.last_seen_ms = now_ms;
                inst.last_heartbeat_ms = Some(now_ms);
                inst.uptime = Some(hb.uptime);
                inst.cpu_centipercent = Some(hb.cpu_centipercent);
                inst.memory_mb = Some(hb.memory_mb);
                inst.threads = Some(hb.threads);
                inst.pid = hb.pid;
                inst.heartbeats += 1;
                inst.unsaved_heartbeats += 1;
                // Reuse the strings' buffers: a heartbeat changes their contents, rarely their size.
                match metrics {
                    Some(metrics) => {
                        let kept = inst.metrics_json.get_or_insert_with(String::new);
                        kept.clear();
                        kept.push_str(metrics);
                    }
                    None => inst.metrics_json = None,
                }
                set_unescaped(&mut inst.version, hb.version);
                set_unescaped(&mut inst.hostname, hb.hostname);
                let mut events = Vec::new();
                // A heartbeat proves the instance alive, whatever was said before.
                if inst.status != Status::Online {
                    events.push(FleetEvent::StatusChanged {
                        instance_id: instance.to_owned(),
                        from: inst.status,
                        to: Status::Online,
                    });
                    inst.status = Status::Online;
                    inst.status_changed_ms = now_ms;
                    inst.whole = true;
                }
                if heartbeat_events {
                    events.push(FleetEvent::Heartbeat {
                        instance_id: instance.to_owned(),
                        timestamp: hb.timestamp.to_owned(),
                    });
                }
                self.refusals.json_not_stored += u64::from(metrics.is_none());
                let (timestamp, at) = &mut self.latest_heartbeat;
                timestamp.clear();
                timestamp.push_str(hb.timestamp);
                *at = now_ms;
                Ok(if events.is_empty() { Ingested::Quiet } else { Ingested::Events(events) })
            }
            Kind::Register if payload.is_empty() => match self.index.get(instance) {
                Some(_) => {
                    let inst = self.entry(node, instance, now_ms, true)?;
                    // Heard from it: the node clears its own register when it stops cleanly.
                    inst.last_seen_ms = now_ms;
                    inst.registered = false;
                    inst.registered_ms = Some(now_ms);
                    Ok(Ingested::Events(vec![FleetEvent::Deregistered { instance_id: instance.to_owned() }]))
                }
                // Deregistering something never registered here (a prune clearing it): nothing to do.
                None => Ok(Ingested::Quiet),
            },
            Kind::Register => {
                let reg = RegisterView::parse(payload)?;
                check(reg.node_name, reg.instance_id)?;
                let hostname = reg.hostname.unwrap_or_default();
                // The views checked the payload is UTF-8.
                let json = self.storable(core::str::from_utf8(payload).unwrap_or_default()).map(str::to_owned);
                let json_dropped = json.is_none();
                let inst = self.entry(node, instance, now_ms, true)?;
                if !retained {
                    inst.last_seen_ms = now_ms;
                }
                inst.registered = true;
                inst.registered_ms = Some(now_ms);
                inst.register_json = json;
                set_unescaped(&mut inst.version, reg.version);
                set_unescaped(&mut inst.start_time, reg.start_time);
                set_unescaped(&mut inst.hostname, hostname);
                inst.pid = reg.pid;
                let registered = FleetEvent::Registered {
                    instance_id: instance.to_owned(),
                    node_name: node.to_owned(),
                    version: inst.version.clone(),
                };
                self.refusals.json_not_stored += u64::from(json_dropped);
                Ok(Ingested::Events(vec![registered]))
            }
            // An empty status is a pruning engine clearing the retained message.
            Kind::Status if payload.is_empty() => Ok(Ingested::Quiet),
            Kind::Status => {
                let st = StatusView::parse(payload)?;
                check(st.node_name, st.instance_id)?;
                let to = match Status::parse(st.status) {
                    Some(s @ (Status::Online | Status::Offline | Status::Lost)) => s,
                    _ => return Err(IngestError::UnknownStatus),
                };
                // Replayed `online` says nothing of an instance judged missing since.
                let known = |k: &Instance| k.status == to || (to == Status::Online && k.status == Status::Missing);
                if retained && self.get(instance).is_some_and(known) {
                    return Ok(Ingested::Quiet);
                }
                let inst = self.entry(node, instance, now_ms, true)?;
                if !retained {
                    inst.last_seen_ms = now_ms;
                }
                let from = inst.status;
                if from == to {
                    return Ok(Ingested::Quiet);
                }
                inst.status = to;
                inst.status_changed_ms = now_ms;
                Ok(Ingested::Events(vec![FleetEvent::StatusChanged { instance_id: instance.to_owned(), from, to }]))
            }
            Kind::Result => {
                let r = ResultView::parse(payload)?;
                check(r.node_name, r.instance_id)?;
                if r.request_id.len() > REQUEST_ID_MAX {
                    return Err(IngestError::TooLong);
                }
                Ok(Ingested::Result(ResultRecord {
                    request_id: Unescaped(r.request_id).to_string(),
                    instance_id: instance.to_owned(),
                    node_name: node.to_owned(),
                    command: Unescaped(r.command).to_string(),
                    success: r.success,
                    message: Unescaped(r.message).to_string(),
                    data: r.data.map(|d| d.as_str().to_owned()),
                    state: Unescaped(r.state).to_string(),
                    timestamp: r.timestamp.to_owned(),
                    received_ms: now_ms,
                }))
            }
        }
    }

    /// Marks online instances silent since before `silent_since_ms` as missing.
    pub(crate) fn mark_missing(&mut self, silent_since_ms: i64, now_ms: i64) -> Vec<FleetEvent> {
        let mut events = Vec::new();
        let listening_since = self.listening_since;
        for (i, inst) in self.instances.iter_mut().enumerate() {
            if inst.status == Status::Online && inst.last_seen_ms.max(listening_since) < silent_since_ms {
                events.push(FleetEvent::StatusChanged {
                    instance_id: inst.instance_id.clone(),
                    from: Status::Online,
                    to: Status::Missing,
                });
                inst.status = Status::Missing;
                inst.status_changed_ms = now_ms;
                inst.whole = true;
                if !inst.dirty {
                    inst.dirty = true;
                    self.dirty.push(i);
                }
            }
        }
        events
    }

    /// Gives every instance a fresh start for missing detection: an engine that just started
    /// (or reconnected) has not been listening, so silence is counted from now. What each
    /// instance was last heard at stays as it was.
    pub(crate) fn listening_from(&mut self, now_ms: i64) {
        self.listening_since = now_ms;
    }

    /// Removes `lost`, `offline` and `missing` instances whose status is older than `before_ms`;
    /// returns them.
    pub(crate) fn prune(&mut self, before_ms: i64) -> Vec<Instance> {
        let old = |i: &Instance| i.status != Status::Online && i.status_changed_ms < before_ms;
        if !self.instances.iter().any(old) {
            return Vec::new();
        }
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.instances).into_iter().partition(old);
        // Positions move: the changed ones are found again by their flag.
        let changed: Vec<bool> = kept.iter().map(|i| i.dirty).collect();
        *self = Self {
            heartbeat_events: self.heartbeat_events,
            limits: self.limits,
            refusals: self.refusals,
            latest_heartbeat: std::mem::take(&mut self.latest_heartbeat),
            listening_since: self.listening_since,
            ..Self::from_instances(kept)
        };
        for (i, (inst, was_changed)) in self.instances.iter_mut().zip(changed).enumerate() {
            if was_changed {
                inst.dirty = true;
                self.dirty.push(i);
            }
        }
        gone
    }

    /// Marks these instances changed again, with the heartbeats they carried still to be
    /// counted (a flush of them failed); ids no longer here (pruned meanwhile) are skipped.
    pub(crate) fn unsaved(&mut self, failed: &[Instance]) {
        for old in failed {
            if let Some(&i) = self.index.get(&old.instance_id) {
                if let Some(inst) = self.instances.get_mut(i) {
                    inst.unsaved_heartbeats += old.unsaved_heartbeats;
                    inst.whole |= old.whole;
                    if !inst.dirty {
                        inst.dirty = true;
                        self.dirty.push(i);
                    }
                }
            }
        }
    }

    /// Marks one instance changed.
    fn touch(&mut self, i: usize) {
        if let Some(inst) = self.instances.get_mut(i).filter(|inst| !inst.dirty) {
            inst.dirty = true;
            self.dirty.push(i);
        }
    }

    /// How many instances changed since the last flush.
    pub(crate) fn dirty_count(&self) -> usize {
        self.dirty.len()
    }

    /// The instances changed since the last call, as they are now; they are considered saved
    /// (and their heartbeats counted) until [`Registry::unsaved`] says otherwise.
    pub(crate) fn take_dirty(&mut self) -> Vec<Instance> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut taken = Vec::with_capacity(dirty.len());
        for i in dirty {
            if let Some(inst) = self.instances.get_mut(i) {
                taken.push(inst.clone());
                inst.dirty = false;
                inst.whole = false;
                inst.unsaved_heartbeats = 0;
            }
        }
        taken
    }

    /// Panics unless the list, the index and the changed set agree and every id belongs to its
    /// node name: what ingest must keep true whatever arrives (see `fuzzing`).
    #[cfg(any(test, feature = "_fuzzing"))]
    pub(crate) fn assert_consistent(&self) {
        assert_eq!(self.index.len(), self.instances.len(), "index and instance list differ in size");
        for (i, inst) in self.instances.iter().enumerate() {
            let id = &inst.instance_id;
            // Each id indexed at its own position also means no two instances share one.
            assert_eq!(self.index.get(id), Some(&i), "{id:?} is not indexed at its position {i}");
            let host_pid = id.strip_prefix(inst.node_name.as_str()).and_then(|rest| rest.strip_prefix('-'));
            assert!(host_pid.is_some_and(|r| !r.is_empty()), "{id:?} is not an id of node {:?}", inst.node_name);
            // A change missing from `dirty` would never reach the database.
            assert_eq!(inst.dirty, self.dirty.contains(&i), "{id:?}: dirty flag and changed set disagree");
        }
        let mut changed = self.dirty.clone();
        changed.sort_unstable();
        changed.dedup();
        assert_eq!(changed.len(), self.dirty.len(), "an instance is in the changed set twice");
        assert!(changed.last().is_none_or(|&i| i < self.instances.len()), "the changed set points past the list");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An instance of node `a` as a register message would leave it.
    pub(crate) fn instance(instance_id: &str) -> Instance {
        Instance { registered: true, ..Instance::new("a", instance_id, 1) }
    }

    const HB: &str = r#"{"timestamp":"2024-01-01T12:00:00Z","node_name":"app","instance_id":"app-h-1","status":"running","pid":1,"uptime":5,"version":"1.0","hostname":"h","metrics":{"process_cpu_usage_percent":"2.50","process_memory_usage_mb":128,"process_goroutine_count":4}}"#;

    fn status(s: &str) -> String {
        format!(r#"{{"timestamp":"2024-01-01T12:00:00Z","node_name":"app","instance_id":"app-h-1","status":"{s}"}}"#)
    }

    #[test]
    fn topics_split_under_a_multi_level_prefix_and_nothing_else() {
        assert_eq!(
            split_topic("corp/fleet", "corp/fleet/app/app-h-1/heartbeat"),
            Some(("app", "app-h-1", Kind::Heartbeat))
        );
        assert_eq!(split_topic("p", "p/app/control"), None);
        assert_eq!(split_topic("p", "p/app/i/result/x"), None);
        assert_eq!(split_topic("p", "px/app/i/result"), None);
        assert_eq!(split_topic("p", "p//-h-1/register"), None);
        assert_eq!(split_topic("p", "p/app//status"), None);
    }

    #[test]
    fn a_heartbeat_registers_metrics_and_brings_a_missing_instance_back() {
        let mut r = Registry::default();
        let topic = "subnodesync/app/app-h-1/heartbeat";
        assert_eq!(r.ingest("subnodesync", topic, HB.as_bytes(), 1000, false), Ok(Ingested::Quiet));
        let inst = r.get("app-h-1").unwrap();
        assert_eq!(
            (inst.cpu_centipercent, inst.memory_mb, inst.uptime, inst.heartbeats),
            (Some(250), Some(128), Some(5), 1)
        );
        assert_eq!(r.mark_missing(2000, 2000).len(), 1);
        assert_eq!(r.get("app-h-1").unwrap().status, Status::Missing);
        let back = r.ingest("subnodesync", topic, HB.as_bytes(), 3000, false).unwrap();
        assert!(
            matches!(back, Ingested::Events(e) if e == [FleetEvent::StatusChanged { instance_id: "app-h-1".into(), from: Status::Missing, to: Status::Online }])
        );
        assert_eq!(r.take_dirty().len(), 1);
        assert!(r.take_dirty().is_empty());
    }

    #[test]
    fn a_replayed_retained_message_is_no_sighting_and_changes_only_what_it_says_differently() {
        let register = concat!(
            r#"{"timestamp":"2024-01-01T12:00:00Z","node_name":"app","instance_id":"app-h-1","version":"1.0","#,
            r#""pid":1,"start_time":"2024-01-01T12:00:00Z","capabilities":[],"metadata":{"hostname":"h"},"#,
            r#""node_version":{"git_version":"v1","git_commit":"c","build_date":"2024-01-01","go_version":"r","#,
            r#""platform":"linux/amd64"}}"#
        );
        let mut r = Registry::default();
        let (reg, st) = ("subnodesync/app/app-h-1/register", "subnodesync/app/app-h-1/status");
        r.ingest("subnodesync", reg, register.as_bytes(), 100, false).unwrap();
        r.ingest("subnodesync", st, status("online").as_bytes(), 100, false).unwrap();
        r.take_dirty();
        assert_eq!(r.mark_missing(200, 200).len(), 1);
        r.take_dirty();
        // A reconnect replays both: neither is a sighting, and `online` is no news of a missing
        // instance (the register in place is, and is written).
        r.listening_from(300);
        assert!(matches!(r.ingest("subnodesync", reg, register.as_bytes(), 300, true), Ok(Ingested::Events(_))));
        assert_eq!(r.ingest("subnodesync", st, status("online").as_bytes(), 300, true), Ok(Ingested::Quiet));
        let inst = r.get("app-h-1").unwrap();
        assert_eq!((inst.status, inst.last_seen_ms, inst.registered_ms), (Status::Missing, 100, Some(300)));
        // A retained `lost` this engine missed is news, but still no sighting.
        assert!(matches!(r.ingest("subnodesync", st, status("lost").as_bytes(), 400, true), Ok(Ingested::Events(_))));
        let inst = r.get("app-h-1").unwrap();
        assert_eq!((inst.status, inst.status_changed_ms, inst.last_seen_ms), (Status::Lost, 400, 100));
        // Silence before the engine listened does not count.
        r.ingest("subnodesync", st, status("online").as_bytes(), 500, false).unwrap();
        r.listening_from(10_000);
        assert!(r.mark_missing(9_000, 10_500).is_empty());
    }

    #[test]
    fn status_messages_change_status_and_prune_takes_only_old_dead_instances() {
        let mut r = Registry::default();
        let topic = "subnodesync/app/app-h-1/status";
        r.ingest("subnodesync", topic, status("online").as_bytes(), 0, false).unwrap();
        r.ingest("subnodesync", topic, status("lost").as_bytes(), 10, false).unwrap();
        assert_eq!(r.get("app-h-1").unwrap().status, Status::Lost);
        assert!(r.prune(5).is_empty());
        assert_eq!(r.prune(20).len(), 1);
        assert!(r.get("app-h-1").is_none());
    }

    #[test]
    fn bad_input_gets_a_typed_error() {
        let mut r = Registry::default();
        assert_eq!(r.ingest("subnodesync", "other/x", b"{}", 0, false), Err(IngestError::Topic));
        assert!(matches!(
            r.ingest("subnodesync", "subnodesync/app/app-h-1/heartbeat", b"{", 0, false),
            Err(IngestError::Payload(_))
        ));
        assert_eq!(
            r.ingest("subnodesync", "subnodesync/app/app-h-2/heartbeat", HB.as_bytes(), 0, false),
            Err(IngestError::TopicMismatch)
        );
        assert_eq!(
            r.ingest("subnodesync", "subnodesync/app/app-h-1/status", status("dancing").as_bytes(), 0, false),
            Err(IngestError::UnknownStatus)
        );
        let long_id = format!("app-{}-1", "h".repeat(INSTANCE_ID_MAX));
        let topic = format!("subnodesync/app/{long_id}/status");
        assert_eq!(r.ingest("subnodesync", &topic, b"{}", 0, false), Err(IngestError::TooLong));
        let result = |request_id: &str| {
            format!(
                r#"{{"request_id":"{request_id}","node_name":"app","instance_id":"app-h-1","command":"ping","success":true,"message":"pong","data":null,"state":"done","timestamp":"2024-01-01T12:00:00Z"}}"#
            )
        };
        let topic = "subnodesync/app/app-h-1/result";
        assert!(matches!(r.ingest("subnodesync", topic, result("r-1").as_bytes(), 0, false), Ok(Ingested::Result(_))));
        let long_request = result(&"r".repeat(REQUEST_ID_MAX + 1));
        assert_eq!(r.ingest("subnodesync", topic, long_request.as_bytes(), 0, false), Err(IngestError::TooLong));
        assert!(r.instances().is_empty());
    }

    #[test]
    fn only_an_instance_changed_by_heartbeats_alone_is_written_narrow() {
        let mut r = Registry::default();
        let hb =
            |r: &mut Registry| r.ingest("subnodesync", "subnodesync/app/app-h-1/heartbeat", HB.as_bytes(), 10, false);
        let whole = |r: &mut Registry| r.take_dirty().iter().map(|i| i.whole).collect::<Vec<_>>();
        hb(&mut r).unwrap();
        assert_eq!(whole(&mut r), [true], "a new instance has no row yet");
        hb(&mut r).unwrap();
        assert_eq!(whole(&mut r), [false]);
        r.ingest("subnodesync", "subnodesync/app/app-h-1/status", status("offline").as_bytes(), 20, false).unwrap();
        hb(&mut r).unwrap();
        assert_eq!(whole(&mut r), [true], "a status, and the heartbeat bringing it back");
        r.mark_missing(100, 100);
        assert_eq!(whole(&mut r), [true]);
        hb(&mut r).unwrap();
        let failed = r.take_dirty();
        r.unsaved(&failed);
        assert_eq!(whole(&mut r), [true], "the revival's flush failed and is written again whole");
    }

    #[test]
    fn a_full_registry_refuses_new_instances_and_counts_them_but_keeps_serving_known_ones() {
        let mut r = Registry { limits: Limits { max_instances: 2, ..Limits::default() }, ..Registry::default() };
        let hb = |n: u32| HB.replace("app-h-1", &format!("app-h-{n}"));
        let topic = |n: u32| format!("subnodesync/app/app-h-{n}/heartbeat");
        for n in 1..=2 {
            r.ingest("subnodesync", &topic(n), hb(n).as_bytes(), 0, false).unwrap();
        }
        assert_eq!(r.ingest("subnodesync", &topic(3), hb(3).as_bytes(), 0, false), Err(IngestError::RegistryFull));
        assert_eq!(r.ingest("subnodesync", &topic(4), hb(4).as_bytes(), 0, false), Err(IngestError::RegistryFull));
        assert_eq!(r.refusals().registry_full, 2);
        assert_eq!(r.instances().len(), 2);
        r.ingest("subnodesync", &topic(1), hb(1).as_bytes(), 5, false).unwrap();
        assert_eq!(r.get("app-h-1").map(|i| i.heartbeats), Some(2));
    }

    #[test]
    fn json_beyond_the_limit_is_not_kept_but_its_fields_are_ingested() {
        let mut r = Registry { limits: Limits { max_stored_json: 120, ..Limits::default() }, ..Registry::default() };
        let topic = "subnodesync/app/app-h-1/heartbeat";
        r.ingest("subnodesync", topic, HB.as_bytes(), 0, false).unwrap();
        let inst = r.get("app-h-1").unwrap();
        assert!(inst.metrics_json.is_some(), "the metrics object is within the limit: {inst:?}");
        assert_eq!(r.refusals().json_not_stored, 0);
        let big = HB.replace(
            r#""process_goroutine_count":4"#,
            &format!(r#""process_goroutine_count":4,"pad":"{}""#, "x".repeat(100)),
        );
        r.ingest("subnodesync", topic, big.as_bytes(), 1, false).unwrap();
        let inst = r.get("app-h-1").unwrap();
        assert_eq!((inst.metrics_json.as_deref(), inst.heartbeats, inst.cpu_centipercent), (None, 2, Some(250)));
        assert_eq!(r.refusals().json_not_stored, 1);
    }

    #[test]
    fn pruning_keeps_what_was_waiting_to_be_written_and_nothing_more() {
        let mut r = Registry::default();
        let hb = |n: u32| HB.replace("app-h-1", &format!("app-h-{n}"));
        for n in 1..=3 {
            r.ingest("subnodesync", &format!("subnodesync/app/app-h-{n}/heartbeat"), hb(n).as_bytes(), 0, false)
                .unwrap();
        }
        r.take_dirty();
        assert!(r.prune(100).is_empty());
        assert_eq!(r.dirty_count(), 0, "a prune that took nothing rewrote the registry");
        let lost = status("lost").replace("app-h-1", "app-h-3");
        r.ingest("subnodesync", "subnodesync/app/app-h-3/status", lost.as_bytes(), 1, false).unwrap();
        r.ingest("subnodesync", "subnodesync/app/app-h-2/heartbeat", hb(2).as_bytes(), 2, false).unwrap();
        r.take_dirty();
        r.ingest("subnodesync", "subnodesync/app/app-h-2/heartbeat", hb(2).as_bytes(), 3, false).unwrap();
        assert_eq!(r.prune(100).len(), 1);
        let waiting: Vec<String> = r.take_dirty().into_iter().map(|i| i.instance_id).collect();
        assert_eq!(waiting, ["app-h-2"]);
    }

    #[test]
    fn a_long_missing_instance_is_pruned_like_a_lost_one() {
        let mut r = Registry::default();
        r.ingest("subnodesync", "subnodesync/app/app-h-1/heartbeat", HB.as_bytes(), 0, false).unwrap();
        r.mark_missing(10, 10);
        assert!(r.prune(10).is_empty(), "missing for no time at all");
        assert_eq!(r.prune(11).iter().map(|i| i.instance_id.as_str()).collect::<Vec<_>>(), ["app-h-1"]);
    }
}
