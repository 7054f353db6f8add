//! # subnodesync-sysinfo
//!
//! What a SubNodeSync node on a std platform reports about itself: process metrics for the
//! heartbeat ([`ProcessSampler`]) and build information for the register message's
//! `node_version` ([`build_info`] and [`node_version!`]).
//!
//! ## Build information
//!
//! The values must describe the *application's* build, so they are captured by the
//! application's build script and compiled into the application. Add the crate twice, the
//! build dependency without default features (it then depends on the core alone):
//!
//! ```toml
//! [dependencies]
//! subnodesync-sysinfo = "0.1"
//!
//! [build-dependencies]
//! subnodesync-sysinfo = { version = "0.1", default-features = false }
//! ```
//!
//! ```no_run
//! // build.rs
//! fn main() {
//!     subnodesync_sysinfo::build_info::emit();
//! }
//! ```
//!
//! ```
//! // main.rs
//! use subnodesync_core::{Config, NodeVersion};
//!
//! const NODE_VERSION: NodeVersion<'static> = subnodesync_sysinfo::node_version!();
//!
//! let config = Config { version: "1.0.0", node_version: NODE_VERSION, ..Config::new("my-app", "host-1", 4242) };
//! // Without the build script every field is "unknown"; with it, e.g. "linux/amd64".
//! assert!(!config.node_version.platform.is_empty());
//! ```
//!
//! A build without git (a source tarball) or a build that must not depend on it sets the values
//! in the environment instead: see [`build_info`] for the variables. Nothing fails when git is
//! missing; the values read `unknown`.
//!
//! ## Process metrics
//!
//! ```
//! use subnodesync_core::Metric;
//! use subnodesync_sysinfo::ProcessSampler;
//!
//! let mut sampler = ProcessSampler::new(); // keep it: CPU use is measured between samples
//! // On each Event::HeartbeatDue (on a blocking thread in an async runtime):
//! let sample = sampler.sample();
//! let custom = [("queue_depth", Metric::Int(3))];
//! let metrics = sample.to_metrics(&custom);
//! # assert_eq!(metrics.custom.len(), 1);
//! // node.send_heartbeat(now, metrics, ..)
//! ```
//!
//! [`ProcessSampler::sample`] makes blocking system calls and takes tens to hundreds of
//! microseconds; in tokio run it with `spawn_blocking`. A process that runs many nodes shares
//! one sample among them with [`SharedSampler`] (the tokio adapter's default).
//!
//! ## Features
//!
//! - `sampler` (default): [`ProcessSampler`] and [`Sample`], with `sysinfo` and
//!   `subnodesync-core`.
//! - `node-version` (default): the [`node_version!`] macro, with `subnodesync-core`.
//!
//! With neither, the crate is [`build_info`] alone, on std and the core: the build-dependency
//! form.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// The build.rs example above shows the whole file, `fn main` included.
#![allow(clippy::needless_doctest_main)]

pub mod build_info;
#[cfg(feature = "sampler")]
mod sampler;
#[cfg(feature = "sampler")]
mod shared;

#[cfg(feature = "sampler")]
pub use sampler::{ProcessSampler, Sample};
#[cfg(feature = "sampler")]
pub use shared::{Refresh, SharedSampler};
#[cfg(any(feature = "sampler", feature = "node-version"))]
pub use subnodesync_core::{Metric, Metrics, NodeVersion};

/// This machine's host name as the operating system reports it (Linux, macOS, Windows, the
/// BSDs), or `None` where it has none.
#[cfg(feature = "sampler")]
pub fn host_name() -> Option<String> {
    sysinfo::System::host_name().filter(|name| !name.trim().is_empty())
}

/// The application's [`NodeVersion`], from the values its build script captured with
/// [`build_info::emit`].
///
/// Expands to a constant expression, so it can initialise a `const`. Each field whose variable
/// was not set when the application was compiled reads `"unknown"`; a variable set in the
/// environment of the compilation counts too, even without the build script.
///
/// ```
/// let version = subnodesync_sysinfo::node_version!();
/// assert!(!version.git_commit.is_empty());
/// ```
#[cfg(feature = "node-version")]
#[macro_export]
macro_rules! node_version {
    () => {
        // The names are the values of the `build_info::*_VAR` constants: `option_env!` needs
        // literals. It expands here, in the application, so it reads the application's values.
        $crate::NodeVersion {
            git_version: $crate::__or_unknown(::core::option_env!("SUBNODE_BUILD_GIT_VERSION")),
            git_commit: $crate::__or_unknown(::core::option_env!("SUBNODE_BUILD_GIT_COMMIT")),
            build_date: $crate::__or_unknown(::core::option_env!("SUBNODE_BUILD_DATE")),
            go_version: $crate::__or_unknown(::core::option_env!("SUBNODE_BUILD_RUSTC_VERSION")),
            platform: $crate::__or_unknown(::core::option_env!("SUBNODE_BUILD_PLATFORM")),
        }
    };
}

/// Used by [`node_version!`]: the value, or `"unknown"` if unset or empty.
#[cfg(feature = "node-version")]
#[doc(hidden)]
#[must_use]
pub const fn __or_unknown(value: Option<&'static str>) -> &'static str {
    match value {
        Some(v) if !v.is_empty() => v,
        _ => build_info::UNKNOWN,
    }
}

#[cfg(all(test, feature = "node-version"))]
mod tests {
    use super::*;

    #[test]
    fn unset_or_empty_values_read_unknown() {
        assert_eq!(__or_unknown(None), "unknown");
        assert_eq!(__or_unknown(Some("")), "unknown");
        assert_eq!(__or_unknown(Some("v1.0.0")), "v1.0.0");
    }
}
