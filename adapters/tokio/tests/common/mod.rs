//! This crate's test fixtures: the shared kit (a real mosquitto, a plain-MQTT engine) plus what
//! needs the tokio adapter itself. Shared with `examples/tests` by path.
#![allow(dead_code)]

pub(crate) use subnodesync_testkit::*;
