//! Heartbeat metrics: the process sampler (blocking, run off the runtime) and custom metrics.

use subnodesync_core::{Metric, Metrics};
use subnodesync_sysinfo::{ProcessSampler, Sample};

/// Samples the three fixed heartbeat metrics for each heartbeat of one node.
///
/// `sample` may block (it reads `/proc` or calls into the OS): the node runs it on the
/// runtime's blocking pool, never on the runtime. Without one, a node uses the process-wide
/// `subnodesync_sysinfo::SharedSampler` (one sample a second for every node of the process);
/// give a node a `ProcessSampler` or any closure `FnMut() -> Sample` to sample on its own:
///
/// ```no_run
/// # use subnodesync_host::{NodeBuilder, Sample};
/// # fn configure<R>() -> NodeBuilder<R> {
/// let builder = NodeBuilder::new("my-app").sampler(|| Sample { cpu_centipercent: 50, memory_mb: 64, threads: 8 });
/// # builder }
/// ```
pub trait Sampler: Send + 'static {
    /// Takes one sample. CPU use is the average since the previous call.
    fn sample(&mut self) -> Sample;
}

impl<F: FnMut() -> Sample + Send + 'static> Sampler for F {
    fn sample(&mut self) -> Sample {
        self()
    }
}

impl Sampler for ProcessSampler {
    fn sample(&mut self) -> Sample {
        ProcessSampler::sample(self)
    }
}

/// The value of a custom heartbeat metric.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// A JSON integer.
    Int(i64),
    /// A JSON number; NaN and infinities are sent as `null`.
    Float(f64),
    /// A JSON string.
    Str(String),
    /// A JSON boolean.
    Bool(bool),
}

impl MetricValue {
    fn as_metric(&self) -> Metric<'_> {
        match self {
            Self::Int(v) => Metric::Int(*v),
            Self::Float(v) => Metric::Float(*v),
            Self::Str(v) => Metric::Str(v),
            Self::Bool(v) => Metric::Bool(*v),
        }
    }
}

macro_rules! metric_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for MetricValue {
            fn from(v: $t) -> Self {
                Self::$variant(v.into())
            }
        }
    )*};
}

metric_from!(i64 => Int, i32 => Int, i16 => Int, i8 => Int, u32 => Int, u16 => Int, u8 => Int,
    f64 => Float, f32 => Float, bool => Bool, String => Str, &str => Str);

impl From<u64> for MetricValue {
    fn from(v: u64) -> Self {
        // Beyond i64 a JSON integer would not survive most engines anyway.
        i64::try_from(v).map_or(Self::Float(v as f64), Self::Int)
    }
}

impl From<usize> for MetricValue {
    fn from(v: usize) -> Self {
        Self::from(v as u64)
    }
}

/// Custom metrics in the order the application first set them.
#[derive(Debug, Clone, Default)]
pub(crate) struct CustomMetrics {
    entries: Vec<(String, MetricValue)>,
}

impl CustomMetrics {
    pub(crate) fn set(&mut self, name: String, value: MetricValue) {
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.entries.push((name, value)),
        }
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| n != name);
    }

    /// Calls `f` with the core's view of `process` plus these metrics.
    pub(crate) fn with_metrics<R>(&self, process: &Sample, f: impl FnOnce(&Metrics<'_>) -> R) -> R {
        let custom: Vec<(&str, Metric<'_>)> = self.entries.iter().map(|(n, v)| (n.as_str(), v.as_metric())).collect();
        f(&process.to_metrics(&custom))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_metrics_keep_their_first_order_and_take_updates_in_place() {
        let mut m = CustomMetrics::default();
        m.set("a".into(), 1.into());
        m.set("b".into(), "x".into());
        m.set("a".into(), 2.5.into());
        m.remove("missing");
        let names = m.with_metrics(&Sample::default(), |metrics| {
            metrics.custom.iter().map(|(n, v)| format!("{n}={v:?}")).collect::<Vec<_>>()
        });
        assert_eq!(names, ["a=Float(2.5)", "b=Str(\"x\")"]);
    }
}
