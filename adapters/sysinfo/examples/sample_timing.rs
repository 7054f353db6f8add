//! How long one `ProcessSampler::sample()` takes on this machine, and what it reads.
//!
//! ```sh
//! cargo run --release -p subnodesync-sysinfo --example sample_timing
//! ```

use std::time::{Duration, Instant};

use subnodesync_sysinfo::ProcessSampler;

fn main() {
    let mut sampler = ProcessSampler::new();
    let start = Instant::now();
    let first = sampler.sample();
    let first_took = start.elapsed();

    let runs = 1_000;
    let mut took: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(sampler.sample());
            start.elapsed()
        })
        .collect();
    took.sort();
    let mean = took.iter().sum::<Duration>() / runs;
    let processes = std::fs::read_dir("/proc")
        .map(|d| d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())).count())
        .unwrap_or(0);

    println!("first sample:  {first_took:?}  {first:?}");
    println!(
        "next {runs}: mean {mean:?}, median {:?}, p99 {:?}, max {:?} ({processes} processes on the host)",
        took[took.len() / 2],
        took[took.len() * 99 / 100],
        took[took.len() - 1]
    );
    std::thread::sleep(Duration::from_secs(1));
    println!("after 1 s idle: {:?}", sampler.sample());
    println!("node_version: {:?}", subnodesync_sysinfo::node_version!());
}
