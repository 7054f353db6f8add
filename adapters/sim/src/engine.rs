//! The simulated management engine. It sits inside the broker: it sees everything nodes
//! publish, and publishes commands (QoS 1, not retained) on instance control topics, or now and
//! then on the broadcast topic, resending any request without a final result after
//! [`SimConfig::engine_retry`]. It also checks the results: one final result per request, and
//! every copy of it byte-identical (a replay, never a second execution).

use std::collections::BTreeMap;

use subnodesync_fixtures::wire;

use crate::node::SimNode;
use crate::world::{micros, Micros, SimEvent, World};
use crate::SimConfig;

/// What the engine has asked and heard.
pub(crate) struct Engine {
    pub(crate) requests: Vec<PendingCommand>,
    /// (request_id, node) to the request; a broadcast is one request per node.
    by_request_id: BTreeMap<(String, usize), usize>,
    /// Each node's index by its instance id, to tell who sent a result.
    node_by_instance: BTreeMap<String, usize>,
    broadcast_topic: String,
    /// The last desired-document version published: every document gets a greater one.
    pub(crate) desired_version: u64,
}

/// One command to one node.
pub(crate) struct PendingCommand {
    pub(crate) node: usize,
    pub(crate) request_id: String,
    payload: Vec<u8>,
    pub(crate) last_sent: Micros,
    pub(crate) attempts: u32,
    /// The first final result, which every later copy must equal.
    pub(crate) result: Option<Vec<u8>>,
}

impl Engine {
    pub(crate) fn new(config: &SimConfig, nodes: &[SimNode<'_>]) -> Self {
        let mut node_by_instance = BTreeMap::new();
        for (i, sim_node) in nodes.iter().enumerate() {
            // The first node with an instance id answers for it, as a search from the start would.
            node_by_instance.entry(sim_node.instance.clone()).or_insert(i);
        }
        Self {
            requests: Vec::new(),
            by_request_id: BTreeMap::new(),
            node_by_instance,
            broadcast_topic: format!("{}/{}/control", config.node.topic_prefix, config.node.node_name),
            desired_version: 0,
        }
    }
}

impl World<'_, '_> {
    /// Schedules the next new request, if one still falls before the quiet tail: the engine
    /// spreads `commands_per_node` per node over the faulty part of the run.
    pub(crate) fn schedule_engine_new(&mut self) {
        let per_hour = f64::from(self.config.commands_per_node) * self.nodes.len() as f64 * 3_600.0
            / (self.config.duration.as_micros().max(1) as f64 / 1e6);
        let dt = self.rng.exp_micros(per_hour);
        if dt != u64::MAX && self.now + dt < self.fault_end {
            self.at(self.now + dt, SimEvent::EngineNew);
        }
    }

    pub(crate) fn engine_new(&mut self) {
        self.schedule_engine_new();
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        if self.nodes[i].requests >= self.config.commands_per_node {
            return;
        }
        // One in ten goes to every instance at once, on the broadcast control topic.
        let broadcast =
            self.rng.below(10) == 0 && self.nodes.iter().all(|s| s.requests < self.config.commands_per_node);
        self.stats.broadcasts += u32::from(broadcast);
        let n = self.engine.requests.len();
        let request_id = format!("{}-{n}", if broadcast { "b" } else { "r" });
        let command = match self.rng.below(20) {
            0..=4 => "ping",
            5 | 6 => "status",
            7 if self.config.change_heartbeat_interval => "reregister",
            8 if self.config.change_heartbeat_interval && !broadcast => "set_heartbeat_interval",
            _ => self.config.app_command,
        };
        let parameters = match (command, self.rng.below(5)) {
            ("ping" | "status" | "reregister", _) => "{}".to_string(),
            ("set_heartbeat_interval", _) => {
                // A value this node never had, so the driver sees the change and knows the next
                // heartbeat is due one new interval after it (whatever order retries run in).
                let sim_node = &mut self.nodes[i];
                sim_node.intervals_set += 1;
                let mut seconds = 4 + u64::from(sim_node.intervals_set);
                if seconds >= self.config.node.heartbeat_interval.as_secs() {
                    seconds += 1;
                }
                format!("{{\"seconds\":{seconds}}}")
            }
            (_, 0) => format!("{{\"text\":\"t{n}\",\"timeout_ms\":{}}}", self.rng.range(500, 5_000)),
            _ => format!("{{\"text\":\"t{n}\"}}"),
        };
        let payload = wire::command_json(command, &request_id, &parameters);
        let targets: Vec<usize> = if broadcast { (0..self.nodes.len()).collect() } else { vec![i] };
        for node in targets {
            self.stats.requests += 1;
            self.nodes[node].requests += 1;
            self.engine.by_request_id.insert((request_id.clone(), node), self.engine.requests.len());
            self.engine.requests.push(PendingCommand {
                node,
                request_id: request_id.clone(),
                payload: payload.clone().into_bytes(),
                last_sent: self.now,
                attempts: 0,
                result: None,
            });
        }
        if broadcast {
            for request in &mut self.engine.requests[n..] {
                request.attempts += 1;
            }
            let topic = self.engine.broadcast_topic.clone();
            self.engine_send(&topic, payload.into_bytes(), "every node");
        } else {
            self.engine_publish(n);
        }
    }

    /// Publishes a control message, or loses it if the broker is down.
    fn engine_send(&mut self, topic: &str, payload: Vec<u8>, to: &str) {
        self.stats.publishes += 1;
        let up = self.broker.up;
        self.log("engine", || {
            format!(
                "publish {} to {to}{}",
                String::from_utf8_lossy(&payload),
                if up { "" } else { " (broker down: lost)" }
            )
        });
        if up {
            self.route(topic, &payload, false, true);
        }
    }

    /// Sends request `r` (again) on its node's instance control topic; a broadcast request that
    /// one node did not answer is retried on that node's own topic: the key is the request id.
    fn engine_publish(&mut self, r: usize) {
        let request = &mut self.engine.requests[r];
        request.attempts += 1;
        request.last_sent = self.now;
        let (node, payload) = (request.node, request.payload.clone());
        let topic = self.nodes[node].control_topic.clone();
        self.engine_send(&topic, payload, &format!("n{node}"));
    }

    pub(crate) fn engine_retry(&mut self) {
        let retry = micros(self.config.engine_retry);
        self.at(self.now + retry, SimEvent::EngineRetry);
        for r in 0..self.engine.requests.len() {
            let request = &self.engine.requests[r];
            if request.result.is_none() && request.last_sent + retry <= self.now {
                self.engine_publish(r);
            }
        }
    }

    /// Everything a node (or a will) publishes reaches the engine here.
    pub(crate) fn engine_receive(&mut self, topic: &str, payload: &[u8]) {
        if topic.ends_with("/status") && payload.windows(15).any(|w| w == b"\"status\":\"lost\"") {
            self.stats.wills += 1;
        }
        if !topic.ends_with("/result") {
            return;
        }
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return self.fail(format!("result on {topic} is not JSON: {}", String::from_utf8_lossy(payload)));
        };
        if json["state"] != "done" {
            return;
        }
        self.stats.results += 1;
        let request_id = json["request_id"].as_str().unwrap_or_default();
        let from = json["instance_id"].as_str().and_then(|id| self.engine.node_by_instance.get(id));
        let Some(&r) = from.and_then(|&node| self.engine.by_request_id.get(&(request_id.to_string(), node))) else {
            return self
                .fail(format!("result for request_id {request_id} from {}, which was not asked", json["instance_id"]));
        };
        let request = &self.engine.requests[r];
        let instance = &self.nodes[request.node].instance;
        if !topic.contains(instance.as_str()) {
            return self.fail(format!("result for {request_id} from {instance} published on {topic}"));
        }
        match &request.result {
            None => {
                self.log("engine", || format!("result {request_id}: {}", json["message"]));
                self.engine.requests[r].result = Some(payload.to_vec());
            }
            Some(first) if first != payload => {
                let message = format!(
                    "request {request_id} got two different final results (run twice?):\n  {}\n  {}",
                    String::from_utf8_lossy(first),
                    String::from_utf8_lossy(payload)
                );
                self.fail(message);
            }
            Some(_) => {}
        }
    }
}
