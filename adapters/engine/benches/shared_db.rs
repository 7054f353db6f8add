//! Engines sharing one database under a fleet: E `subnode serve --share bench` processes
//! (release build) ingest N simulated instances beating once a second through a local mosquitto,
//! into one PostgreSQL database (a server of the bench's own, on loopback) or one SQLite file.
//! Measured over a window once every engine lists every instance: rows written a second (from
//! each engine's `rows_written`), each engine's CPU, the database's CPU (PostgreSQL's server
//! and backends; SQLite runs inside the engines), and the lag from a heartbeat to the shared
//! registry (the age of each instance's last stored heartbeat: half a second on average is the
//! fleet's own phase, the rest is the engines' and the database's).
//!
//! `cargo bench -p subnodesync-engine --bench shared_db -- --instances 10000 --engines 2 --db postgres --seconds 10`
//!
//! `--db sqlite` for the same with one SQLite file; `--engines 1` and a growing `--instances`
//! for the largest fleet one engine keeps up with (every heartbeat stored, lag under a second).

mod common;
#[path = "common/fleet.rs"]
mod fleet;
#[path = "../tests/subnode/http.rs"]
#[allow(dead_code)]
mod http;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{cpu_ticks, rss_mib};
use fleet::{fleet, tree_ticks};
use subnodesync_fixtures::{Mosquitto, MosquittoLog, MosquittoOptions, Postgres};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn number(name: &str, default: u64) -> u64 {
    arg(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A `subnode serve` in the share group, and its console's URL.
struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn start(broker: &str, db: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_subnode"))
            .env_clear()
            .env("SUBNODE_BROKER_URL", broker)
            .env("SUBNODE_DB", db)
            .env("SUBNODE_HEARTBEAT_INTERVAL", "1s")
            .args(["serve", "--listen", "127.0.0.1:0", "--share", "bench"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start subnode serve");
        let mut url = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut url).expect("the console's URL");
        Self { child, base: url.trim().to_owned() }
    }

    fn stats(&self) -> serde_json::Value {
        http::get(&self.base, "/api/engine").json()["stats"].clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shared registry as `subnode nodes --offline --json` reads it: each instance's
/// heartbeat count and its last heartbeat's age now, in ms.
fn stored(broker: &str, db: &str) -> Vec<(u64, i64)> {
    let out = Command::new(env!("CARGO_BIN_EXE_subnode"))
        .env_clear()
        .env("SUBNODE_BROKER_URL", broker)
        .env("SUBNODE_DB", db)
        .args(["nodes", "--offline", "--json"])
        .output()
        .expect("subnode nodes");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nodes --json");
    let age = |i: &serde_json::Value| i["last_heartbeat_age_ms"].as_i64().unwrap_or(i64::MAX);
    list.as_array().into_iter().flatten().map(|i| (i["heartbeats"].as_u64().unwrap_or(0), age(i))).collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let instances = number("--instances", 10_000);
    let engines = number("--engines", 2);
    let seconds = number("--seconds", 10);
    let backend = arg("--db").unwrap_or_else(|| "postgres".into());
    let broker = Mosquitto::start(MosquittoOptions {
        config: "allow_anonymous true\nmax_queued_messages 100000\n".into(),
        raise_fd_limit: false,
        log: MosquittoLog::Off,
    })
    .expect("mosquitto starts");
    let scratch = std::env::temp_dir().join(format!("subnode-shared-db-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let postgres = (backend == "postgres").then(|| Postgres::start().expect("PostgreSQL starts"));
    let db = match &postgres {
        Some(server) => server.url(),
        None => scratch.join("engine.db").display().to_string(),
    };
    let serves: Vec<Serve> = (0..engines).map(|_| Serve::start(&broker.url(), &db)).collect();
    println!("shared-db bench: {instances} instances at 1 heartbeat/s into {engines} engine(s) on {backend}, {seconds} s window");

    fleet(broker.port(), instances, 8);
    let (url, db2) = (broker.url(), db.clone());
    let report = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(180);
        for serve in &serves {
            while http::get(&serve.base, "/api/nodes").json().as_array().map_or(0, Vec::len) < instances as usize {
                assert!(Instant::now() < deadline, "an engine did not list all {instances} instances in 180 s");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        // Settled: the first flushes of every instance are behind.
        std::thread::sleep(Duration::from_secs(3));
        let window = Duration::from_secs(seconds);
        let rows_before: Vec<u64> = serves.iter().map(|s| s.stats()["rows_written"].as_u64().unwrap_or(0)).collect();
        let cpu_before: Vec<u64> = serves.iter().map(|s| cpu_ticks(s.child.id())).collect();
        let pg_pid = postgres.as_ref().and_then(Postgres::pid);
        let pg_before = pg_pid.map(tree_ticks);
        let beats_before: u64 = stored(&url, &db2).iter().map(|(b, _)| b).sum();
        let started = Instant::now();
        std::thread::sleep(window);
        let elapsed = started.elapsed().as_secs_f64();
        let rows: Vec<f64> = serves
            .iter()
            .zip(&rows_before)
            .map(|(s, before)| (s.stats()["rows_written"].as_u64().unwrap_or(0) - before) as f64 / elapsed)
            .collect();
        let cpu: Vec<f64> = serves
            .iter()
            .zip(&cpu_before)
            .map(|(s, before)| (cpu_ticks(s.child.id()) - before) as f64 / elapsed)
            .collect();
        let pg_cpu = pg_pid.zip(pg_before).map(|(pid, before)| (tree_ticks(pid) - before) as f64 / elapsed);
        let now = stored(&url, &db2);
        let stored_rate = (now.iter().map(|(b, _)| b).sum::<u64>() - beats_before) as f64 / elapsed;
        let mut ages: Vec<i64> = now.iter().map(|&(_, age)| age).collect();
        ages.sort_unstable();
        let pick = |q: f64| ages.get(((ages.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(i64::MAX);
        let list = |v: &[f64], unit: &str| v.iter().map(|x| format!("{x:.1}{unit}")).collect::<Vec<_>>().join(" + ");
        format!(
            "rows written:          {} = {:.0} rows/s\n\
             heartbeats stored:     {stored_rate:.0}/s of {instances}/s sent ({:.1} %)\n\
             engine CPU:            {} of a core\n\
             engine RSS:            {}\n\
             database CPU:          {}\n\
             last heartbeat's age:  p50 {} ms, p99 {} ms, max {} ms",
            list(&rows, "/s"),
            rows.iter().sum::<f64>(),
            stored_rate / instances as f64 * 100.0,
            list(&cpu, " %"),
            list(&serves.iter().map(|s| rss_mib(s.child.id())).collect::<Vec<_>>(), " MiB"),
            pg_cpu.map_or("inside the engines (SQLite)".to_owned(), |c| format!("{c:.1} % of a core (PostgreSQL)")),
            pick(0.5),
            pick(0.99),
            pick(1.0),
        )
    })
    .await
    .expect("the measurements");
    println!("{report}");
    let _ = std::fs::remove_dir_all(&scratch);
}
