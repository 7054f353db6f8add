//! This crate's test fixtures: the shared kit (a real mosquitto, a plain-MQTT engine) plus what
//! needs the tokio adapter itself. Shared with `examples/tests` by path.
#![allow(dead_code)]

pub(crate) mod scenarios;

pub(crate) use subnodesync_testkit::*;

/// The next lifecycle event matching `pred`, within [`WAIT`].
pub(crate) async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<subnodesync_tokio::LifecycleEvent>,
    what: &str,
    pred: impl Fn(&subnodesync_tokio::LifecycleEvent) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) if pred(&event) => return,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event stream ended while waiting for {what}: {e}"),
            Err(_) => panic!("no {what} event within {WAIT:?}"),
        }
    }
}
