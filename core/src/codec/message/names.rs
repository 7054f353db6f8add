//! The wire contract's field names, each written once: the decoders look them up by name,
//! the encoders write them as ready-made keys.

/// Declares each field name once, as a name (`field::X`) and as an encoder key (`key::X`).
macro_rules! fields {
    ($($(#[$doc:meta])* $name:ident = $text:literal;)*) => {
        /// The field names, as the engine-side decoders look them up.
        pub mod field {
            $($(#[$doc])* pub const $name: &str = $text;)*
        }

        /// `,"name":` for each field: what an encoder writes before a member's value.
        pub(crate) mod key {
            $(pub(crate) const $name: &[u8] = concat!(",\"", $text, "\":").as_bytes();)*
        }
    };
}

fields! {
    /// When a message was built.
    TIMESTAMP = "timestamp";
    /// Application name.
    NODE_NAME = "node_name";
    /// `{node_name}-{hostname}-{pid}`.
    INSTANCE_ID = "instance_id";
    /// Application version.
    VERSION = "version";
    /// Process id.
    PID = "pid";
    /// When the node started.
    START_TIME = "start_time";
    /// Register: capability array.
    CAPABILITIES = "capabilities";
    /// Register: string pairs, `hostname` first.
    METADATA = "metadata";
    /// Register: build information object.
    NODE_VERSION = "node_version";
    /// `node_version.git_version`.
    GIT_VERSION = "git_version";
    /// `node_version.git_commit`.
    GIT_COMMIT = "git_commit";
    /// `node_version.build_date`.
    BUILD_DATE = "build_date";
    /// `node_version.go_version` (the Go original's name for the compiler version).
    GO_VERSION = "go_version";
    /// `node_version.platform`.
    PLATFORM = "platform";
    /// Heartbeat `running`; status `online` / `offline` / `lost`.
    STATUS = "status";
    /// Heartbeat: seconds since start.
    UPTIME = "uptime";
    /// Heartbeat: host name.
    HOSTNAME = "hostname";
    /// Heartbeat: metrics object.
    METRICS = "metrics";
    /// `metrics.process_cpu_usage_percent`, a two-decimal string.
    CPU = "process_cpu_usage_percent";
    /// `metrics.process_memory_usage_mb`.
    MEMORY_MB = "process_memory_usage_mb";
    /// `metrics.process_goroutine_count`.
    THREADS = "process_goroutine_count";
    /// Result and control: the engine's request id.
    REQUEST_ID = "request_id";
    /// Result and control: the command name.
    COMMAND = "command";
    /// Result: whether the command succeeded.
    SUCCESS = "success";
    /// Result: human-readable outcome.
    MESSAGE = "message";
    /// Result: command output.
    DATA = "data";
    /// Result: `in_progress` or `done`.
    STATE = "state";
    /// Control: the `parameters` object.
    PARAMETERS = "parameters";
    /// `status` result data: the heartbeat interval in seconds.
    HEARTBEAT_INTERVAL = "heartbeat_interval";
    /// `status` result data: CONNACKs accepted since start.
    CONNECTS = "connects";
    /// `status` result data: results the full outbox dropped.
    RESULTS_DROPPED = "results_dropped";
    /// `set_heartbeat_interval` parameter and result data: the new interval in seconds.
    SECONDS = "seconds";
    /// Desired and reported documents: the settings object.
    SETTINGS = "settings";
    /// Reported document: settings not applied, with their reasons.
    REJECTED = "rejected";
    /// Reported document: why the last document refused whole was refused.
    ERROR = "error";
}
