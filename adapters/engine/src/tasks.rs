//! The engine's background tasks: the broker connection, and a ticker that flushes, detects
//! missing instances, prunes and trims the history.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS, SubscribeFilter};
use subnodesync_host::RetryDelays;
use tokio::time::Instant;

use crate::engine::{lock, now_ms, Engine, Shared};
use crate::error::describe_connection_error;
use crate::event::FleetEvent;
use crate::persist::FlushSchedule;

/// First reconnect delay after losing the broker.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
/// Longest reconnect delay.
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// How long a connection must hold before the reconnect delays start over.
const RECONNECT_STABLE: Duration = Duration::from_secs(60);
/// How often old history is deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// How stale other engines' changes may be before this engine stops judging silence: three
/// ticks missed.
const BLIND_AFTER_MS: i64 = 3_000;

/// Removes instances gone for `age` from the registry and clears their retained messages (register,
/// status, reported and their own desired document); the database forgets them at the next flush.
pub(crate) fn prune(shared: &Shared, client: &AsyncClient, age: Duration) -> Vec<String> {
    let before = now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
    let gone = lock(&shared.registry).prune(before);
    if gone.is_empty() {
        return Vec::new();
    }
    // Forgotten here first, so the database forgets them too whatever happens to the publishes.
    lock(&shared.backlog).deleted(gone.iter().map(|i| i.instance_id.clone()));
    lock(&shared.desired.store).forget(gone.iter().map(|i| i.instance_id.as_str()));
    let prefix = &shared.config.topic_prefix;
    let mut unsent = 0;
    for i in &gone {
        // An empty retained publish deletes the retained message (MQTT 3.1.1 §3.3.1.3). `try_`:
        // a full queue (the broker away) must not stall the ticker's flushes behind it. The
        // instance's own desired document goes too: no other process takes its id (the pid is
        // in it), and one that comes back after all falls back on its name's document.
        for kind in ["register", "status", "reported", "desired"] {
            let topic = format!("{prefix}/{}/{}/{kind}", i.node_name, i.instance_id);
            if client.try_publish(topic, QoS::AtLeastOnce, true, Vec::new()).is_err() {
                unsent += 1;
            }
        }
    }
    if unsent > 0 {
        tracing::warn!(unsent, "retained messages of pruned instances not cleared: the client's queue is full");
    }
    let ids: Vec<String> = gone.into_iter().map(|i| i.instance_id).collect();
    let _ = shared.events.send(FleetEvent::Pruned { instance_ids: ids.clone() });
    ids
}

/// Drives the MQTT connection: subscribe after every CONNACK, ingest every PUBLISH, and after a
/// failure wait a jittered, growing delay (the nodes' backoff) before rumqttc reconnects.
pub(crate) async fn run_connection(shared: Arc<Shared>, client: AsyncClient, mut eventloop: EventLoop) {
    let filters = Engine::filters(&shared.config);
    let mut acks_due = 0;
    let mut delays =
        RetryDelays::new(RECONNECT_MIN, RECONNECT_MAX, u64::from(std::process::id()) ^ now_ms().unsigned_abs());
    let mut up_since = None;
    let mut connected_once = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                up_since = Some(Instant::now());
                lock(&shared.registry).listening_from(now_ms());
                connected_once = true;
                shared.problem.send_if_modified(|p| p.take().is_some());
                if !shared.connected.swap(true, Ordering::Relaxed) {
                    tracing::info!("connected to the broker");
                    let _ = shared.events.send(FleetEvent::BrokerConnected);
                }
                // Heartbeats at QoS 0: periodic state the next one replaces, which this engine
                // (maybe one of several in a `$share` group) then never acknowledges before it
                // has written it. Register, status and result at QoS 1: every engine receives them.
                let qos = |f: &str| if f.ends_with("/heartbeat") { QoS::AtMostOnce } else { QoS::AtLeastOnce };
                let subs = filters.iter().map(|f| SubscribeFilter::new(f.clone(), qos(f)));
                // `try_`: awaiting here would wait on the very loop that drains the queue.
                if let Err(e) = client.try_subscribe_many(subs) {
                    tracing::warn!(error = %e, "cannot subscribe");
                }
                acks_due = 1;
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if acks_due > 0 {
                    acks_due -= 1;
                    shared.synced.send_modify(|s| *s = (true, Instant::now()));
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => shared.on_publish(&p.topic, &p.payload, p.retain),
            Ok(_) => {}
            // Our own DISCONNECT closed it: nothing to report or retry.
            Err(_) if shared.stopping.load(Ordering::Relaxed) => return,
            Err(e) => {
                // A connection that held for a while starts the delays over.
                if up_since.take().is_some_and(|at| at.elapsed() >= RECONNECT_STABLE) {
                    delays.reset();
                }
                let delay = delays.next_delay();
                let error = describe_connection_error(&e);
                if shared.connected.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, retry_in = ?delay, "broker connection lost; reconnecting");
                } else {
                    tracing::warn!(%error, retry_in = ?delay, "cannot connect to the broker");
                }
                if !connected_once {
                    shared.problem.send_replace(Some(error.clone()));
                }
                let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                let _ = shared.events.send(FleetEvent::BrokerDisconnected { error, retry_in_ms });
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Flushes (backing off while the database fails), detects missing instances, prunes and
/// applies the history's retention, on a timer.
pub(crate) async fn run_ticker(shared: Arc<Shared>, client: AsyncClient) {
    let mut tick = tokio::time::interval(shared.config.flush_interval.min(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence = i64::try_from((shared.config.heartbeat_interval * 3).as_millis()).unwrap_or(i64::MAX);
    let mut schedule = FlushSchedule::new(u64::from(std::process::id()) ^ now_ms().unsigned_abs().rotate_left(17));
    let mut retention_due = Instant::now();
    loop {
        tick.tick().await;
        let now = now_ms();
        if let Some(age) = shared.config.prune_after {
            prune(&shared, &client, age);
        }
        if schedule.due(Instant::now()) {
            let s = shared.clone();
            match tokio::task::spawn_blocking(move || s.flush()).await {
                Ok(Ok(rows)) if schedule.succeeded() => {
                    shared.database_failing.store(false, Ordering::Relaxed);
                    tracing::info!(rows, "the database takes writes again; nothing queued was lost");
                    let _ = shared.events.send(FleetEvent::DatabaseRecovered { rows });
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    shared.database_failing.store(true, Ordering::Relaxed);
                    let delay = schedule.failed(Instant::now());
                    let unsaved_rows = lock(&shared.backlog).rows() + lock(&shared.registry).dirty_count();
                    tracing::warn!(error = %e, unsaved_rows, retry_in = ?delay, "cannot write the database; rows kept");
                    let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                    let error = e.to_string();
                    let _ = shared.events.send(FleetEvent::DatabaseFailed { error, unsaved_rows, retry_in_ms });
                }
                Err(_) => {}
            }
        }
        // After the flush, which took in the heartbeats other engines sharing the database
        // ingested. Silence counts only while the engine listens: its own outage says nothing of the
        // fleet (and the connection task restarts the count when it is back).
        // With other engines writing, what they heard is part of the picture: while it cannot be
        // read (the database is down), nobody is judged missing on this engine's share alone.
        let blind = shared.shared_database.load(Ordering::Relaxed)
            && now_ms().saturating_sub(shared.refreshed_ms.load(Ordering::Relaxed)) > BLIND_AFTER_MS;
        if shared.connected.load(Ordering::Relaxed) && !blind {
            let events = lock(&shared.registry).mark_missing(now.saturating_sub(silence), now);
            shared.publish_events(events);
        }
        if Instant::now() >= retention_due {
            retention_due = Instant::now() + RETENTION_EVERY;
            trim_history(shared.clone()).await;
        }
    }
}

/// Deletes the history the retention settings no longer keep.
pub(crate) async fn trim_history(shared: Arc<Shared>) {
    let trimmed =
        tokio::task::spawn_blocking(move || lock(&shared.store).apply_retention(&shared.config.retention, now_ms()))
            .await;
    match trimmed {
        Ok(Ok(p)) if p.commands + p.results > 0 => {
            tracing::info!(commands = p.commands, results = p.results, "old history deleted");
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot delete old history"),
        _ => {}
    }
}
