//! Samples this process's CPU use, resident memory and thread count for heartbeats.

use std::time::Instant;

use subnodesync_core::{Metric, Metrics};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One reading of this process, in the units of [`Metrics`].
///
/// A field the platform could not provide is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Sample {
    /// CPU use since the previous sample in hundredths of a percent, where 100% is one core
    /// busy (as `top` shows it): 250 is 2.5%, a process keeping two cores busy reads 20_000.
    /// The first sample of a sampler reads 0.
    pub cpu_centipercent: u32,
    /// Resident set size in MiB, rounded down.
    pub memory_mb: u64,
    /// Operating-system threads of the process; 0 where unsupported (see [`ProcessSampler`]).
    pub threads: u64,
}

impl Sample {
    /// The heartbeat metrics of this sample, followed by the application's `custom` metrics.
    #[must_use]
    pub fn to_metrics<'a>(&self, custom: &'a [(&'a str, Metric<'a>)]) -> Metrics<'a> {
        Metrics { cpu_centipercent: self.cpu_centipercent, memory_mb: self.memory_mb, threads: self.threads, custom }
    }
}

impl From<Sample> for Metrics<'static> {
    /// The heartbeat metrics of a sample, without custom metrics.
    fn from(sample: Sample) -> Self {
        sample.to_metrics(&[])
    }
}

/// Samples the current process.
///
/// Keep one sampler for the life of the process: CPU use is measured between consecutive
/// [`sample`](Self::sample) calls on the same sampler.
///
/// # Blocking
///
/// `sample` makes blocking system calls (on Linux it lists `/proc` and reads
/// `/proc/self/{stat,statm,status}` and `/proc/stat`), typically tens to hundreds of
/// microseconds, more on a host with many processes. In an async runtime run it on a blocking
/// thread, e.g. tokio's `spawn_blocking`, moving the sampler in and back out.
///
/// # Sources
///
/// - CPU: the process's accumulated user and system time from `sysinfo`, divided by the
///   wall-clock time between samples. This is `top`'s per-core figure and does not depend on
///   how often or how recently anything else refreshed. The kernel counts CPU time in ticks
///   (10 ms on Linux), so sample at intervals of seconds, as heartbeats do, for a stable figure.
/// - Memory: the resident set size from `sysinfo`.
/// - Threads: on Linux and Android the `Threads:` line of `/proc/self/status`, one small read
///   that is exact at that instant. (`sysinfo` can list a process's tasks, but only by reading
///   `/proc/<pid>/task` of every process on the host.) Other platforms report 0: `sysinfo` 0.36
///   does not expose a thread count there.
#[derive(Debug)]
pub struct ProcessSampler {
    system: System,
    pid: Pid,
    /// Accumulated CPU time in ms and when it was read, from the previous sample.
    previous: Option<(u64, Instant)>,
}

impl Default for ProcessSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessSampler {
    /// A sampler of the current process. Does no I/O; the first [`sample`](Self::sample) does.
    #[must_use]
    pub fn new() -> Self {
        ProcessSampler { system: System::new(), pid: Pid::from_u32(std::process::id()), previous: None }
    }

    /// Reads the process's current figures. Blocks: see [Blocking](Self#blocking).
    pub fn sample(&mut self) -> Sample {
        // Tasks off: listing them means reading every process's task directory on the host.
        let refresh = ProcessRefreshKind::nothing().with_cpu().with_memory().without_tasks();
        self.system.refresh_processes_specifics(ProcessesToUpdate::Some(&[self.pid]), false, refresh);
        let now = Instant::now();
        let Some(process) = self.system.process(self.pid) else {
            self.previous = None;
            return Sample { threads: thread_count().unwrap_or(0), ..Sample::default() };
        };
        let cpu_ms = process.accumulated_cpu_time();
        let cpu_centipercent = match self.previous.replace((cpu_ms, now)) {
            Some((previous_ms, then)) => {
                let wall_us = now.duration_since(then).as_micros();
                centipercent(cpu_ms.saturating_sub(previous_ms), wall_us)
            }
            None => 0,
        };
        Sample { cpu_centipercent, memory_mb: process.memory() / (1024 * 1024), threads: thread_count().unwrap_or(0) }
    }
}

/// CPU use in hundredths of a percent: `cpu_ms` of CPU time over `wall_us` of wall-clock time.
fn centipercent(cpu_ms: u64, wall_us: u128) -> u32 {
    if wall_us == 0 {
        return 0;
    }
    // cpu_ms * 1000 / wall_us is the busy fraction; times 10_000 for hundredths of a percent.
    let centi = u128::from(cpu_ms) * 10_000_000 / wall_us;
    u32::try_from(centi).unwrap_or(u32::MAX)
}

/// The number of threads of this process, where the platform says so cheaply.
fn thread_count() -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        parse_status_threads(&std::fs::read_to_string("/proc/self/status").ok()?)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

/// The `Threads:` value of a `/proc/<pid>/status` file.
#[cfg_attr(not(any(target_os = "linux", target_os = "android", test)), allow(dead_code))]
fn parse_status_threads(status: &str) -> Option<u64> {
    status.lines().find_map(|line| line.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_line_is_parsed_from_proc_status() {
        let status = "Name:\tsubnode\nState:\tS (sleeping)\nTgid:\t42\nThreads:\t17\nSigQ:\t0/1\n";
        assert_eq!(parse_status_threads(status), Some(17));
        assert_eq!(parse_status_threads("Name:\tx\n"), None);
        assert_eq!(parse_status_threads("Threads:\tmany\n"), None);
    }

    #[test]
    fn centipercent_is_cpu_time_over_wall_time() {
        assert_eq!(centipercent(0, 1_000_000), 0);
        // 25 ms of CPU in 1 s is 2.50%.
        assert_eq!(centipercent(25, 1_000_000), 250);
        // Two cores busy for 30 s is 200%.
        assert_eq!(centipercent(60_000, 30_000_000), 20_000);
        assert_eq!(centipercent(5, 0), 0);
        assert_eq!(centipercent(u64::MAX, 1), u32::MAX);
    }

    #[test]
    fn sample_maps_onto_heartbeat_metrics() {
        let custom = [("queue_depth", Metric::Int(3))];
        let sample = Sample { cpu_centipercent: 250, memory_mb: 12, threads: 4 };
        let metrics = sample.to_metrics(&custom);
        assert_eq!((metrics.cpu_centipercent, metrics.memory_mb, metrics.threads), (250, 12, 4));
        assert_eq!(metrics.custom, &custom);
        assert!(Metrics::from(sample).custom.is_empty());
    }
}
