//! [`init_logging`]: a `tracing` subscriber for applications; the library never installs one.

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::config::{self, LogFormat};
use crate::error::{Error, InvalidValue};

/// The filter when `SUBNODE_LOG` is unset.
const DEFAULT_FILTER: &str = "info";

/// Swaps the filter of the subscriber [`init_logging`] installed.
type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Set once, by the [`init_logging`] call that installed the subscriber.
static RELOAD: OnceLock<Reload> = OnceLock::new();

/// Replaces the log filter of the subscriber [`init_logging`] installed, at run time (say, from
/// a desired-state setting): `EnvFilter` syntax, as `SUBNODE_LOG`. `Err` says why not: a bad
/// filter, or logging not set up by `init_logging`.
pub fn set_log_filter(filter: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|_| "not a tracing filter (e.g. info, debug, warn)".to_owned())?;
    let reload = RELOAD.get().ok_or_else(|| "logging was not set up by init_logging".to_owned())?;
    reload(filter)
}

/// Installs a global `tracing` subscriber writing to stderr: the filter from `SUBNODE_LOG`
/// (`EnvFilter` syntax, default `info`) and the format from `SUBNODE_LOG_FORMAT` (`json`, one
/// object per line with the span fields `node_name`, `instance_id` and `request_id`; or
/// `pretty`, the default). Call it once, early in `main`.
pub fn init_logging() -> Result<(), Error> {
    init_logging_or(DEFAULT_FILTER)
}

/// [`init_logging`] with another filter for when `SUBNODE_LOG` is unset (a CLI shows only
/// warnings unless asked for more).
pub fn init_logging_or(default_filter: &str) -> Result<(), Error> {
    let var = |key: &str| std::env::var_os(key).map(|v| v.to_string_lossy().into_owned()).filter(|v| !v.is_empty());
    let filter = var(config::LOG).unwrap_or_else(|| default_filter.into());
    let filter = EnvFilter::try_new(&filter).map_err(|_| {
        Error::Env(InvalidValue {
            name: config::LOG,
            value: filter.clone(),
            expected: "a tracing filter such as info, debug or subnodesync_tokio=debug,warn",
        })
    })?;
    let format = match var(config::LOG_FORMAT) {
        Some(v) => config::parse_log_format(&v)
            .map_err(|expected| Error::Env(InvalidValue { name: config::LOG_FORMAT, value: v, expected }))?,
        None => LogFormat::default(),
    };
    // Colours only for a person at a terminal, and never when NO_COLOR is set.
    let ansi = std::io::stderr().is_terminal() && var("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let reload: Reload = match format {
        // Every enclosing span, so a handler's lines carry node_name and instance_id as well as
        // request_id.
        LogFormat::Json => {
            let builder = builder.json().with_current_span(false).with_span_list(true).with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().map_err(|_| Error::LoggingAlreadyInitialized)?;
            Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()))
        }
        LogFormat::Pretty => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().map_err(|_| Error::LoggingAlreadyInitialized)?;
            Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()))
        }
    };
    // Only the call that installed the subscriber gets here, so the cell is empty.
    let _ = RELOAD.set(reload);
    Ok(())
}
