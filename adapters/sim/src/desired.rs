//! Desired state in the simulation: the engine publishes retained desired documents, for the
//! name or for one instance, among the faults (now and then one without settings, as an engine
//! clears one: a deletion would never reach an instance offline without a session); at the end every
//! node's retained report must carry the merged version of what the broker holds for it, and
//! exactly the merged settings the application accepted.

use serde_json::{Map, Value};

use crate::world::{SimEvent, World};

/// The one setting the simulated application refuses, with this reason.
pub(crate) const REFUSED: (&str, &str) = ("locked", "read-only here");

impl World<'_, '_> {
    /// Schedules the next desired-state change, if one still falls before the quiet tail:
    /// `desired_changes` per run, over the faulty part.
    pub(crate) fn schedule_desired_change(&mut self) {
        let per_hour =
            f64::from(self.config.desired_changes) * 3_600.0 / (self.config.duration.as_micros().max(1) as f64 / 1e6);
        let dt = self.rng.exp_micros(per_hour);
        if dt != u64::MAX && self.now + dt < self.fault_end {
            self.at(self.now + dt, SimEvent::DesiredChange);
        }
    }

    /// Publishes a new desired document (one in eight without settings), retained, on the name's
    /// topic or on a random instance's; lost if the broker is down, as a real engine's would be.
    pub(crate) fn desired_change(&mut self) {
        self.schedule_desired_change();
        let prefix = format!("{}/{}", self.config.node.topic_prefix, self.config.node.node_name);
        let topic = match self.rng.below(3) {
            0 => format!("{prefix}/desired"),
            _ => {
                let i = self.rng.below(self.nodes.len() as u64) as usize;
                self.nodes[i].register_topic.replace("/register", "/desired")
            }
        };
        self.engine.desired_version += 1;
        let version = self.engine.desired_version;
        let mut settings = Map::new();
        if self.rng.below(8) != 0 {
            settings.insert("mode".into(), Value::String(format!("m{version}")));
            if self.rng.below(4) == 0 {
                settings.insert(REFUSED.0.into(), Value::Bool(true));
            }
            if self.config.change_heartbeat_interval && self.rng.below(3) == 0 {
                // Values `set_heartbeat_interval` never sends (5 to 17 s), nor the configured one:
                // the driver sees every change the command makes.
                settings.insert("heartbeat_interval".into(), Value::from(20 + self.rng.below(10)));
            }
        }
        let payload = serde_json::json!({"version": version, "settings": settings}).to_string().into_bytes();
        self.stats.desired_changes += 1;
        let up = self.broker.up;
        self.log("engine", || {
            let what = String::from_utf8_lossy(&payload);
            format!("desired on {topic}: {what}{}", if up { "" } else { " (broker down: lost)" })
        });
        if up {
            self.route(&topic, &payload, true, true);
        }
    }

    /// Node `i` applies the merged desired state: its application takes every setting but one.
    pub(crate) fn apply_desired(&mut self, i: usize) {
        let now = self.node_now(i);
        let applied = self.nodes[i].node.apply_desired(now, |key, _| match key {
            k if k == REFUSED.0 => Err(REFUSED.1.into()),
            _ => Ok(()),
        });
        if let Err(e) = applied {
            self.fail(format!("node {i} could not report its desired state: {e}"));
        }
    }

    /// Every node's retained report matches the documents the broker holds for it.
    pub(crate) fn check_desired_converged(&mut self) {
        let prefix = format!("{}/{}", self.config.node.topic_prefix, self.config.node.node_name);
        let name_doc = self.retained_json(&format!("{prefix}/desired"));
        for i in 0..self.nodes.len() {
            let base = self.nodes[i].register_topic.trim_end_matches("/register").to_string();
            let instance_doc = self.retained_json(&format!("{base}/desired"));
            let version = |doc: &Option<Value>| doc.as_ref().and_then(|d| d["version"].as_u64()).unwrap_or(0);
            let expected_version = version(&name_doc).max(version(&instance_doc));
            let mut expected = Map::new();
            for doc in [&name_doc, &instance_doc].into_iter().flatten() {
                if let Some(settings) = doc["settings"].as_object() {
                    expected
                        .extend(settings.iter().filter(|(k, _)| *k != REFUSED.0).map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            let report = self.retained_json(&format!("{base}/reported"));
            let Some(report) = report else {
                if expected_version > 0 {
                    self.fail(format!("node {i} never reported desired version {expected_version}"));
                }
                continue;
            };
            let ok = report["version"].as_u64() == Some(expected_version)
                && report["settings"] == Value::Object(expected.clone())
                && report["error"].is_null();
            if !ok {
                let message = format!(
                    "node {i} reported {report} for desired version {expected_version} (settings {expected:?})"
                );
                return self.fail(message);
            }
        }
    }

    fn retained_json(&self, topic: &str) -> Option<Value> {
        self.broker.retained.get(topic).and_then(|p| serde_json::from_slice(p).ok())
    }
}
