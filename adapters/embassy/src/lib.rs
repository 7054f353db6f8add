//! # subnodesync-embassy
//!
//! Runs a [`subnodesync_core::Node`] on [embassy]: `#![no_std]`, no `alloc`, no `unsafe`. The
//! adapter only moves bytes and time; every protocol decision (when to connect, ping, resend,
//! back off) stays in the core.
//!
//! You bring four things, all owned by the task that runs the node:
//!
//! * a [`Connector`] that opens one connection to the broker: anything `embedded-io-async`
//!   `Read + Write`, such as an embassy-net `TcpSocket`, or an `embedded-tls` `TlsConnection`
//!   on top of one. An async closure returning such a connection is a connector too;
//! * [`Handlers`]: a table, of a capacity you choose, of your [`Handler`]s by command name;
//! * a [`Sampler`] that fills each heartbeat with what the device knows (free heap, uptime, a
//!   sensor value) as custom metrics;
//! * the node itself, built with [`Node::new`] on [`Resources`] you own (a `StaticCell` or the
//!   task's own future: no heap).
//!
//! Then [`run`] drives the node until the engine stops or restarts it, reconnecting forever with
//! the core's backoff. Time is embassy-time's own: the core's `Instant` *is*
//! `embassy_time::Instant`, so nothing is converted.
//!
//! ```no_run
//! # async fn device<C: subnodesync_embassy::Connector>(mut connector: C) {
//! use subnodesync_core::{Config, Metrics, Node};
//! use subnodesync_embassy::{run, Handlers, Resources, Sampler};
//!
//! struct Uptime;
//! impl Sampler for Uptime {
//!     fn sample(&mut self) -> Metrics<'_> {
//!         Metrics::default()
//!     }
//! }
//!
//! let mut handlers: Handlers<'_, 2> = Handlers::new();
//! let commands = handlers.names();
//! let config = Config { commands: &commands, ..Config::new("sensor", "board-7", 1) };
//! let mut resources: Resources = Resources::new();
//! let (buffers, scratch) = resources.split();
//! let built: Result<Node<'_>, _> = Node::new(config, buffers, 7, embassy_time::Instant::now());
//! let Ok(mut node) = built else { return };
//! let stopped = run(&mut node, &mut connector, &mut handlers, &mut Uptime, scratch, |_| {}).await;
//! # let _ = stopped;
//! # }
//! ```
//!
//! [embassy]: https://embassy.dev
//! [`Node::new`]: subnodesync_core::Node::new

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod app;
mod error;
mod resources;
mod runner;

pub use app::{Connector, Handler, Handlers, HandlersFull, Sampler};
pub use error::{Notice, TransportError};
pub use resources::Resources;
pub use runner::{run, Stopped};
