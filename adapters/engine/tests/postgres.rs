//! Engines sharing one PostgreSQL database, as an operator runs them: `subnode serve` processes
//! in one `$share` group, real nodes over mosquitto, a PostgreSQL server of the test's own. Read
//! only through what a user reads: the consoles' JSON API and `subnode nodes` / `history`.

mod subnode;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use subnode::http::{get, post_json};
use subnode::*;
use subnodesync_fixtures::Postgres;
use subnodesync_testkit::tls::make_pki;
use subnodesync_testkit::{Broker, WAIT};

/// `subnode nodes --json --offline`: the shared database's registry, no engine involved.
fn stored(url: &str, db: &str) -> Vec<Value> {
    let out = run(url, db, &["nodes", "--offline", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    json(&out).as_array().cloned().unwrap_or_default()
}

/// The instance `id` in a list of instances.
fn find<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter().find(|i| i["instance_id"] == id).unwrap_or_else(|| panic!("{id} not in {list:#?}"))
}

/// Waits until `check` holds, polling every 200 ms.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_engines_share_one_registry_and_history_and_one_keeps_ingesting_when_the_other_is_killed() {
    let broker = Broker::start();
    let pg = Postgres::start().expect("PostgreSQL");
    let db = pg.url();
    let (mut a, console_a) = Running::serve(&broker.url(), &db, &["--share", "ingest"]);
    let (_b, console_b) = Running::serve(&broker.url(), &db, &["--share", "ingest"]);
    // Both subscribed before the first heartbeat.
    std::thread::sleep(Duration::from_secs(2));
    let nodes: Vec<(Running, String)> =
        ["h1", "h2", "h3"].iter().map(|h| Running::node(&broker.url(), "app", h)).collect();
    let ids: Vec<&str> = nodes.iter().map(|(_, id)| id.as_str()).collect();

    // Each engine gets about half the heartbeats; the database counts them all, and each
    // console shows the whole count, not its own half.
    std::thread::sleep(Duration::from_secs(6));
    for id in &ids {
        eventually("the shared registry counts every heartbeat", || {
            let row = stored(&broker.url(), &db);
            let (beats, uptime) = (find(&row, id)["heartbeats"].as_u64(), find(&row, id)["uptime"].as_u64());
            // Neither half (one engine's own count) nor double (a count written twice).
            beats.zip(uptime).is_some_and(|(beats, uptime)| beats + 1 >= uptime && beats <= uptime + 2 && beats >= 5)
        });
        for console in [&console_a, &console_b] {
            eventually("each console shows the shared count", || {
                let list = get(console, "/api/nodes").json();
                let list = list.as_array().cloned().unwrap_or_default();
                let stored_beats = find(&stored(&broker.url(), &db), id)["heartbeats"].as_u64().unwrap_or(0);
                let shown = find(&list, id);
                let shown_beats = shown["heartbeats"].as_u64().unwrap_or(0);
                shown["status"] == "online" && shown_beats + 2 >= stored_beats && shown_beats <= stored_beats + 2
            });
        }
    }

    // A command sent through one console is in the history both read, with every answer.
    let sent = post_json(&console_a, "/api/commands", &json!({"target": "app/*", "command": "ping"})).json();
    let request_id = sent["request_id"].as_str().expect("a request id").to_owned();
    assert_eq!(sent["outcome"]["answered"], 3, "{sent}");
    for console in [&console_a, &console_b] {
        eventually("the command in both engines' history", || {
            let recorded = get(console, &format!("/api/commands/{request_id}")).json();
            recorded["results"].as_array().is_some_and(|r| r.len() == 3)
        });
    }

    // kill -9 one engine: the broker moves the whole share to the other, which goes on writing
    // every instance's heartbeats into the shared registry.
    a.signal("-KILL");
    let _ = a.child.wait();
    let before: Vec<u64> = {
        let rows = stored(&broker.url(), &db);
        ids.iter().map(|id| find(&rows, id)["heartbeats"].as_u64().unwrap_or(0)).collect()
    };
    std::thread::sleep(Duration::from_secs(5));
    let rows = stored(&broker.url(), &db);
    for (id, before) in ids.iter().zip(before) {
        let now = find(&rows, id)["heartbeats"].as_u64().unwrap_or(0);
        assert!(now >= before + 3, "{id}: {before} heartbeats stored before the kill, {now} five seconds after");
        assert_eq!(find(&rows, id)["status"], "online", "{rows:#?}");
    }
    let list = get(&console_b, "/api/nodes").json();
    for id in &ids {
        assert_eq!(find(list.as_array().unwrap(), id)["status"], "online", "{list:#}");
    }
    let history = json(&run(&broker.url(), &db, &["history", "--json", "--limit", "1"]));
    assert_eq!(history[0]["request_id"], request_id.as_str());
    assert_eq!(history[0]["results"].as_array().map(Vec::len), Some(3), "{history:#}");
}

#[test]
fn a_postgresql_restart_while_ingesting_loses_nothing_the_engine_took() {
    let broker = Broker::start();
    let mut pg = Postgres::start().expect("PostgreSQL");
    let db = pg.url();
    let (_serve, console) = Running::serve(&broker.url(), &db, &[]);
    let (_node, id) = Running::node(&broker.url(), "app", "h1");
    eventually("the node in the database", || {
        stored(&broker.url(), &db).iter().any(|i| i["instance_id"] == id.as_str())
    });

    pg.stop();
    // Commands and their results while the database is down queue in the engine.
    let sent = post_json(&console, "/api/commands", &json!({"target": "app/*", "command": "ping"})).json();
    assert_eq!(sent["outcome"]["answered"], 1, "{sent}");
    let request_id = sent["request_id"].as_str().expect("a request id").to_owned();
    std::thread::sleep(Duration::from_secs(3));
    pg.restart().expect("PostgreSQL restarts");

    eventually("the command taken during the outage in the history", || {
        let out = run(&broker.url(), &db, &["history", "--json", "--limit", "5"]);
        let history = serde_json::from_slice::<Value>(&out.stdout).unwrap_or_default();
        history
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["request_id"] == request_id.as_str() && c["results"].as_array().is_some_and(|r| r.len() == 1))
    });
    // Heartbeats taken while it was down are counted too: the count keeps up with the node's
    // uptime (less the few before the engine subscribed).
    eventually("every heartbeat counted across the outage", || {
        let rows = stored(&broker.url(), &db);
        let row = find(&rows, &id);
        let (beats, uptime) = (row["heartbeats"].as_u64().unwrap_or(0), row["uptime"].as_u64().unwrap_or(u64::MAX));
        uptime >= 8 && beats + 3 >= uptime && beats <= uptime + 2
    });
}

#[test]
fn tls_to_postgresql_checks_the_servers_certificate_and_name() {
    let scratch = Scratch::new("postgres-tls");
    let (ours, stranger) = (scratch.0.join("ours"), scratch.0.join("stranger"));
    std::fs::create_dir_all(&ours).and_then(|()| std::fs::create_dir_all(&stranger)).expect("PKI directories");
    let (pki, other) = (make_pki(&ours), make_pki(&stranger));
    let pg = Postgres::start_with_tls(&pki.server_cert, &pki.server_key).expect("PostgreSQL with TLS");
    let at = |host: &str, options: &str| format!("postgres://subnode@{host}:{}/postgres?{options}", pg.port());
    let nodes = |db: &str| run("mqtt://127.0.0.1:9", db, &["nodes", "--offline", "--json"]);

    // The server takes TLS connections only: the one that works used it.
    let trusted = nodes(&at("localhost", &format!("sslmode=verify-full&sslrootcert={}", pki.ca.display())));
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));
    assert_eq!(json(&trusted), json!([]));
    let clear = nodes(&at("localhost", "sslmode=disable"));
    assert!(!clear.status.success(), "a connection in the clear was let in");

    // Another CA's trust, or a name the certificate is not for, is refused with the reason.
    let untrusted = nodes(&at("localhost", &format!("sslmode=require&sslrootcert={}", other.ca.display())));
    let wrong_name = nodes(&at("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={}", pki.ca.display())));
    for refused in [untrusted, wrong_name] {
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && stderr.contains("certificate"), "{stderr}");
    }
}
