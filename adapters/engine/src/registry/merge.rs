//! Rows other engines wrote, folded into this engine's registry by the rules the database
//! applies to writes (`store::UPSERT_INSTANCE`): each group of fields is kept from whoever heard
//! it last, and heartbeat counts add up. An engine sharing its database so knows the instances
//! whose heartbeats the broker gave to another engine, and does not take them for missing.

use super::{Instance, Registry, Status};
use crate::event::FleetEvent;

impl Registry {
    /// Merges instances as the database holds them after other writers; returns the status
    /// changes that makes.
    pub(crate) fn merge(&mut self, rows: Vec<Instance>) -> Vec<FleetEvent> {
        let mut events = Vec::new();
        for row in rows {
            let Some(&i) = self.index.get(&row.instance_id) else {
                if self.instances.len() >= self.limits.max_instances {
                    self.refusals.registry_full += 1;
                    continue;
                }
                self.index.insert(row.instance_id.clone(), self.instances.len());
                self.instances.push(Instance { dirty: false, unsaved_heartbeats: 0, ..row });
                continue;
            };
            let Some(inst) = self.instances.get_mut(i) else { continue };
            // An id another name holds here is refused, as ingest refuses taking one over.
            if inst.node_name != row.node_name {
                continue;
            }
            let revived = merge_into(inst, row, &mut events);
            if revived {
                self.touch(i);
            }
        }
        events
    }
}

/// Merges `row` into `inst`; true if that proved a silent instance alive, a change of this
/// engine's own to write back.
fn merge_into(inst: &mut Instance, row: Instance, events: &mut Vec<FleetEvent>) -> bool {
    inst.heartbeats = row.heartbeats + inst.unsaved_heartbeats;
    inst.first_seen_ms = inst.first_seen_ms.min(row.first_seen_ms);
    if row.last_seen_ms > inst.last_seen_ms {
        inst.last_seen_ms = row.last_seen_ms;
        inst.hostname = row.hostname;
        inst.version = row.version;
        inst.pid = row.pid;
    }
    if row.registered_ms > inst.registered_ms {
        inst.registered = row.registered;
        inst.registered_ms = row.registered_ms;
        inst.start_time = row.start_time;
        inst.register_json = row.register_json;
    }
    if row.last_heartbeat_ms > inst.last_heartbeat_ms {
        inst.last_heartbeat_ms = row.last_heartbeat_ms;
        inst.uptime = row.uptime;
        inst.cpu_centipercent = row.cpu_centipercent;
        inst.memory_mb = row.memory_mb;
        inst.threads = row.threads;
        inst.metrics_json = row.metrics_json;
    }
    let from = inst.status;
    if row.status_changed_ms > inst.status_changed_ms {
        inst.status = row.status;
        inst.status_changed_ms = row.status_changed_ms;
    }
    // A heartbeat after the last status change proves the instance alive, as in ingest.
    let revived = match inst.last_heartbeat_ms {
        Some(beat) if inst.status != Status::Online && beat > inst.status_changed_ms => {
            inst.status = Status::Online;
            inst.status_changed_ms = beat;
            inst.whole = true;
            true
        }
        _ => false,
    };
    if inst.status != from {
        events.push(FleetEvent::StatusChanged { instance_id: inst.instance_id.clone(), from, to: inst.status });
    }
    revived
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tests::instance;

    fn beating(id: &str, at_ms: i64, cpu: u32) -> Instance {
        Instance {
            last_seen_ms: at_ms,
            last_heartbeat_ms: Some(at_ms),
            cpu_centipercent: Some(cpu),
            heartbeats: 10,
            ..instance(id)
        }
    }

    #[test]
    fn an_instance_another_engine_heard_is_added_unchanged_and_not_written_back() {
        let mut r = Registry::default();
        assert!(r.merge(vec![beating("a-h-1", 50, 7)]).is_empty());
        assert_eq!(r.get("a-h-1").map(|i| (i.cpu_centipercent, i.dirty)), Some((Some(7), false)));
        assert_eq!(r.dirty_count(), 0);
    }

    #[test]
    fn newer_fields_are_taken_older_ones_kept_and_heartbeat_counts_add_up() {
        let mut r = Registry::default();
        r.merge(vec![beating("a-h-1", 50, 7)]);
        // This engine ingests two heartbeats of its own, not yet written.
        if let Some(&i) = r.index.get("a-h-1") {
            r.instances[i].unsaved_heartbeats = 2;
        }
        // Another engine's row: an older heartbeat (ignored) but a newer count.
        r.merge(vec![Instance { heartbeats: 15, ..beating("a-h-1", 40, 9) }]);
        let inst = r.get("a-h-1").unwrap();
        assert_eq!((inst.cpu_centipercent, inst.last_seen_ms, inst.heartbeats), (Some(7), 50, 17));
        r.merge(vec![beating("a-h-1", 60, 9)]);
        assert_eq!(r.get("a-h-1").unwrap().cpu_centipercent, Some(9));
    }

    #[test]
    fn a_newer_status_is_taken_with_its_event_and_a_later_heartbeat_revives_the_instance() {
        let mut r = Registry::default();
        r.merge(vec![beating("a-h-1", 50, 7)]);
        let lost = Instance { status: Status::Lost, status_changed_ms: 60, ..beating("a-h-1", 50, 7) };
        let events = r.merge(vec![lost]);
        assert!(matches!(&events[..], [FleetEvent::StatusChanged { to: Status::Lost, .. }]), "{events:?}");
        // A heartbeat another engine took after the loss: alive again, and written back.
        let events = r.merge(vec![Instance { status: Status::Lost, status_changed_ms: 60, ..beating("a-h-1", 70, 7) }]);
        assert!(matches!(&events[..], [FleetEvent::StatusChanged { to: Status::Online, .. }]), "{events:?}");
        assert_eq!(r.get("a-h-1").map(|i| (i.status_changed_ms, i.dirty)), Some((70, true)));
    }

    #[test]
    fn a_row_claiming_another_names_instance_is_refused_and_the_limit_holds() {
        let mut r = Registry::default();
        r.merge(vec![beating("a-h-1", 50, 7)]);
        r.merge(vec![Instance { node_name: "b".into(), ..beating("a-h-1", 90, 1) }]);
        assert_eq!(r.get("a-h-1").unwrap().cpu_centipercent, Some(7));
        r.limits.max_instances = 1;
        r.merge(vec![beating("a-h-2", 50, 7)]);
        assert_eq!((r.instances().len(), r.refusals().registry_full), (1, 1));
    }
}
