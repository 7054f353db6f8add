//! # subnodesync-core
//!
//! The sans-IO protocol core of SubNodeSync: a node that registers with a management engine over
//! MQTT 3.1.1, sends heartbeats, runs control commands and reports their results, and survives
//! broker restarts and flaky networks on its own.
//!
//! The core does no I/O, reads no clock and never allocates. Bytes and instants come in;
//! packets to send, deadlines and events come out. That makes it testable to the byte and to the
//! microsecond, and lets one implementation serve a tokio service and a microcontroller.
//!
//! ```no_run
//! use subnodesync_core::{Buffers, Config, Event, Instant, Metrics, Node, Output};
//!
//! let (mut rx, mut tx, mut outbox) = ([0u8; 2048], [0u8; 1024], [0u8; 4096]);
//! let config = Config { version: "1.0.0", ..Config::new("my-app", "host-1", 4242) };
//! let now = Instant::from_secs(0);
//! let mut node: Node = Node::new(config, Buffers::new(&mut rx, &mut tx, &mut outbox), 7, now).unwrap();
//! # let bytes_from_socket: &[u8] = &[];
//! node.handle_input(now, bytes_from_socket);   // whatever the transport read (copied in), or:
//! let room = node.receive_buffer();             // read the socket straight into this,
//! # let n = 0;
//! node.handle_received(now, n);                 // then say how many bytes it wrote
//! node.handle_timeout(now);                    // spurious calls are harmless
//! while let Some(out) = node.poll_output() {   // drain after every handle_* call
//!     match out {
//!         Output::Open => { /* connect, then node.handle_connected(now) */ }
//!         Output::Transmit(bytes) => { /* write all of bytes */ }
//!         Output::Close => { /* close the transport */ }
//!         Output::Event(Event::HeartbeatDue) => { /* sample, then node.send_heartbeat(..) */ }
//!         Output::Event(_) => {}
//!     }
//! }
//! let _sleep_until = node.poll_timeout();      // None: wait for input only
//! ```
//!
//! The wire contract (topics, payloads, lifecycle) is in `PROTOCOL.md` at the repository root.
//!
//! Layout (private modules, re-exported below): `codec` turns bytes into packets and payloads and
//! back; `session` holds the MQTT session machinery (reconnect backoff, QoS 1 outbox); `node` is
//! the state machine the caller drives; `time` is how time gets in; `error` lists every way
//! things fail.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

#[cfg(test)]
extern crate std;

mod codec;
mod error;
mod node;
mod rng;
mod session;
mod time;

// Compiled for unit tests too, which replay the committed fuzz seeds on stable.
#[cfg(any(test, feature = "_fuzzing"))]
pub mod fuzzing;

// The node: construct, feed input, handle timeouts, poll output.
pub use node::{
    check_command_name, check_setting_key, Buffers, Command, CommandId, Config, ControlTopic, DesiredScope,
    DisconnectReason, Event, Node, NodeStats, Outcome, Output, Rejection, BUILT_INS, COMMAND_MAX, HOSTNAME_MAX,
    INSTANCE_ID_MAX, NODE_NAME_MAX, PREFIX_MAX, REASON_MAX, RECENT_IDS, REQUEST_ID_MAX, SETTINGS_MAX, SETTING_KEY_MAX,
    SETTING_VALUE_MAX, TOPIC_MAX,
};
pub use session::{Backoff, MessageKind};
pub use time::{Date, Duration, Instant, Timestamp};

// What goes over the wire: payloads to write and read, JSON, and MQTT framing.
pub use codec::frame::{FixedHeader, MAX_REMAINING_LEN};
pub use codec::json::{Object, RawJson, Unescaped, Writer, MAX_DEPTH};
pub use codec::message::{
    field, to_json, Capabilities, ControlMessage, HeartbeatMessage, HeartbeatView, Metadata, Metric, Metrics,
    NodeVersion, RegisterMessage, RegisterView, ResultMessage, ResultView, StatusMessage, StatusView, ToJson,
};

// Every way things fail.
pub use error::{
    CommandError, CommandNameError, ConfigError, ConnectRefused, DecodeError, DesiredError, EncodeError, JsonError,
    NodeError, PayloadError,
};

/// The caller-seeded PRNG behind reconnect jitter, for adapters that jitter retries of their own.
pub use rng::Rng;
