//! A simulated fleet for the benches that measure an engine under load, and the CPU of the
//! process trees they start (a browser and its renderers, PostgreSQL and its backends).
//!
//! The instances are not nodes: a few MQTT clients publish one heartbeat per instance per
//! second, so what is measured is the engine's cost alone.

use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};

use super::common::cpu_ticks;

/// One heartbeat of simulated instance `i`.
fn heartbeat(i: u64, uptime: u64) -> (String, String) {
    let node = format!("app{}", i % 10);
    let id = format!("{node}-host{i}-{}", 1000 + i);
    let payload = format!(
        r#"{{"timestamp":"2026-01-01T00:00:00Z","node_name":"{node}","instance_id":"{id}","status":"running","pid":{},"uptime":{uptime},"version":"1.{}.0","hostname":"host{i}","metrics":{{"process_cpu_usage_percent":"{}.{:02}","process_memory_usage_mb":{},"process_goroutine_count":8}}}}"#,
        1000 + i,
        i % 3,
        i % 50,
        uptime % 100,
        64 + i % 512,
    );
    (format!("subnodesync/{node}/{id}/heartbeat"), payload)
}

/// Publishes a heartbeat for each of `instances` every second, from `clients` connections.
pub(crate) fn fleet(port: u16, instances: u64, clients: u64) {
    for c in 0..clients {
        let mut options = MqttOptions::new(format!("fleet-bench-{c}"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_inflight(1000);
        let (client, mut eventloop) = AsyncClient::new(options, 10_000);
        tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            for uptime in 0.. {
                tick.tick().await;
                for i in (c..instances).step_by(clients as usize) {
                    let (topic, payload) = heartbeat(i, uptime);
                    if client.publish(topic, QoS::AtMostOnce, false, payload).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// `cpu_ticks` of a process and all its descendants (a browser and its renderers).
pub(crate) fn tree_ticks(root: u32) -> u64 {
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let descends = |mut pid: u32| loop {
        if pid == root {
            return true;
        }
        match parent_of(pid) {
            Some(parent) if parent > 1 => pid = parent,
            _ => return false,
        }
    };
    pids.into_iter().filter(|&pid| descends(pid)).map(cpu_ticks).sum()
}
