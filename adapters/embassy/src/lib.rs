#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod app;
mod error;
mod resources;
mod runner;

pub use app::{Connector, Handler, Handlers, HandlersFull, Sampler, Setting};
pub use error::{Notice, TransportError};
pub use resources::Resources;
pub use runner::{run, Stopped};
