//! # subnodesync-host
//!
//! Everything a SubNodeSync adapter on a std host needs that does not depend on the async
//! runtime: configuration from code, then `SUBNODE_*` environment variables, then defaults
//! ([`NodeBuilder`]); command handlers ([`CommandHandler`], [`handler_fn`]); heartbeat metrics
//! ([`Sampler`], [`MetricValue`]); TLS on rustls; MQTT over WebSocket and HTTP proxies; the
//! [`Connector`] seam for byte streams of the application's own; HTTP registration; and the
//! loop that feeds the sans-IO core and carries out what it asks ([`NodeHandle`] is the
//! application's end).
//!
//! A runtime adapter is a [`Runtime`] implementation (spawn, run blocking code, sleep, tell the
//! time, open a TCP stream) plus re-exports: `subnodesync-tokio` and `subnodesync-smol`. Use one
//! of those; this crate is what they share.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod command;
pub mod config;
mod driver;
mod error;
mod handle;
mod handler;
mod http;
mod inbox;
#[cfg(feature = "logging")]
mod logging;
mod metrics;
mod proxy;
mod runtime;
mod settings;
mod supervisor;
mod time;
mod tls;
mod transport;

pub use builder::{NodeBuilder, DEFAULT_HANDLER_TIMEOUT};
pub use command::{Command, CommandResult};
pub use config::{BrokerUrl, LogFormat, Scheme};
pub use error::{Error, InvalidValue};
pub use handle::{LifecycleEvent, NodeHandle, StopReason, LIFECYCLE_BACKLOG};
pub use handler::{
    handler_fn, BoxFuture, CommandContext, CommandHandler, FnHandler, HandlerError, HandlerResult, SettingsHandler,
};
#[cfg(feature = "logging")]
pub use logging::{init_logging, init_logging_or};
pub use metrics::{MetricValue, Sampler};
pub use runtime::Runtime;
/// The TLS library behind `mqtts://`, for [`tls_client_config`]'s result.
pub use rustls;
/// JSON values for handler parameters and result data.
pub use serde_json;
pub use settings::{BufferSizes, OwnedNodeVersion};
pub use subnodesync_core::{ConnectRefused, DisconnectReason, NodeVersion};
pub use subnodesync_sysinfo::Sample;
pub use time::RetryDelays;
pub use tls::{client_config as tls_client_config, client_config_with_alpn as tls_client_config_with_alpn};
pub use transport::{BoxStream, ByteStream, Connector};
