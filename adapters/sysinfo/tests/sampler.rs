//! `ProcessSampler` against the real process: the figures move the way the process does.

#![cfg(feature = "sampler")]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use subnodesync_sysinfo::ProcessSampler;

/// Held by the CPU tests, so the idle one does not measure the busy one's spinning.
static CPU_TESTS: Mutex<()> = Mutex::new(());

/// Keeps this thread busy for `duration`.
fn spin(duration: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < duration {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
    x
}

#[test]
fn first_sample_has_no_cpu_figure_yet_but_memory_and_threads() {
    let sample = ProcessSampler::new().sample();
    assert_eq!(sample.cpu_centipercent, 0);
    assert!(sample.memory_mb > 0 || cfg!(not(any(target_os = "linux", target_os = "macos", windows))));
    if cfg!(any(target_os = "linux", target_os = "android")) {
        assert!(sample.threads >= 1);
    }
}

#[test]
fn a_busy_thread_reads_as_roughly_one_core() {
    let _serial = CPU_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut sampler = ProcessSampler::new();
    let _ = sampler.sample();
    spin(Duration::from_millis(800));
    let sample = sampler.sample();
    // One thread spinning is 100%. Other processes may hold the cores (two busy ones on a
    // two-core machine leave the spinner about 65%), so only a wide band is checked: clearly
    // busy, and not beyond what a few cores can do.
    assert!((1_000..=40_000).contains(&sample.cpu_centipercent), "{sample:?}");
}

#[test]
fn an_idle_process_reads_close_to_zero() {
    let _serial = CPU_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut sampler = ProcessSampler::new();
    let _ = sampler.sample();
    std::thread::sleep(Duration::from_millis(300));
    let sample = sampler.sample();
    // CPU time is counted in 10 ms ticks, a few of which the other (light) tests may use.
    assert!(sample.cpu_centipercent <= 2_000, "{sample:?}");
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn threads_held_by_the_process_are_counted() {
    let mut sampler = ProcessSampler::new();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                let _ = rx.lock().map(|rx| rx.recv());
            })
        })
        .collect();
    let threads = sampler.sample().threads;
    drop(tx);
    for handle in handles {
        handle.join().unwrap();
    }
    // Other tests start and end threads concurrently, but at least the main thread, this test's
    // thread and the eight held ones exist.
    assert!(threads >= 10, "{threads}");
}
