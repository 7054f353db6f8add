#![doc = include_str!("../README.md")]

mod builder;
pub mod config;
mod driver;
mod error;
mod handle;
mod handler;
mod http;
#[cfg(feature = "logging")]
mod logging;
mod metrics;
mod time;
mod tls;
mod transport;

pub use builder::{BufferSizes, BuildInfo, NodeBuilder};
pub use config::LogFormat;
pub use error::{Error, InvalidValue};
pub use handle::{shutdown_signal, LifecycleEvent, NodeHandle, StopReason};
pub use handler::{
    handler_fn, BoxFuture, Command, CommandContext, CommandHandler, CommandResult, FnHandler, HandlerError,
    HandlerResult,
};
#[cfg(feature = "logging")]
pub use logging::init_logging;
pub use metrics::{MetricValue, Sampler};
/// The TLS library behind `mqtts://`, for [`tls_client_config`]'s result.
pub use rustls;
/// JSON values for handler parameters and result data.
pub use serde_json;
pub use subnodesync_core::{ConnectRefused, DisconnectReason, NodeVersion};
pub use subnodesync_sysinfo::Sample;
pub use tls::client_config as tls_client_config;

/// Starts a node named `node_name`, configured otherwise by `SUBNODE_*` environment variables
/// and defaults. Shorthand for `NodeBuilder::new(node_name).start()`.
pub async fn start(node_name: impl Into<String>) -> Result<NodeHandle, Error> {
    NodeBuilder::new(node_name).start().await
}
