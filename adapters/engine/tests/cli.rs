//! `subnode` as a user runs it: a subprocess against real brokers the tests start (mosquitto
//! from the testkit, rumqttd through `subnode broker`) and real nodes (`subnode node`
//! processes, so they can be frozen and killed like any process).

mod subnode;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use subnode::*;
use subnodesync_testkit::{free_port, Broker, WAIT};

#[test]
fn a_registered_node_is_listed_and_a_command_round_trips() {
    let broker = Broker::start();
    let scratch = Scratch::new("round-trip");
    let db = scratch.db("engine.db");
    let (_node, id) = Running::node(&broker.url(), "app", "h1");
    let listed = wait_online(&broker.url(), &db, &id);
    assert_eq!((listed["node_name"].as_str(), listed["registered"].as_bool()), (Some("app"), Some(true)));

    let out = run(&broker.url(), &db, &["send", &id, "echo", "--param", "text=hi", "--param", "n=3", "--json"]);
    assert!(out.status.success(), "send failed: {}", String::from_utf8_lossy(&out.stderr));
    let outcome = json(&out);
    let result = &outcome["results"][0];
    assert_eq!((result["instance_id"].as_str(), result["success"].as_bool()), (Some(id.as_str()), Some(true)));
    // The engine tells the node to give up just before it does (`--timeout`, 10 s by default).
    assert_eq!(result["data"], serde_json::json!({"timeout_ms": 9000, "text": "hi", "n": 3}));

    // The history has the command and its result.
    let history = json(&run(&broker.url(), &db, &["history", "--json"]));
    assert_eq!(history[0]["request_id"], outcome["request_id"]);
    assert_eq!(history[0]["results"][0]["message"], "echoed");
}

#[test]
fn a_broadcast_reaches_all_three_instances_and_a_failure_sets_the_exit_code() {
    let broker = Broker::start();
    let scratch = Scratch::new("broadcast");
    let db = scratch.db("engine.db");
    let nodes: Vec<(Running, String)> =
        ["h1", "h2", "h3"].iter().map(|h| Running::node(&broker.url(), "shop", h)).collect();
    for (_, id) in &nodes {
        wait_online(&broker.url(), &db, id);
    }
    let out = run(&broker.url(), &db, &["send", "shop/*", "ping", "--json"]);
    assert!(out.status.success(), "broadcast failed: {}", String::from_utf8_lossy(&out.stdout));
    let outcome = json(&out);
    let answered: Vec<&str> =
        outcome["results"].as_array().unwrap().iter().filter_map(|r| r["instance_id"].as_str()).collect();
    let mut ids: Vec<&str> = nodes.iter().map(|(_, id)| id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(answered, ids);
    assert_eq!(outcome["results"][0]["message"], "pong");

    // An unknown command fails on every instance, and the exit code says so.
    let out = run(&broker.url(), &db, &["send", "shop/*", "reboot", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let outcome = json(&out);
    assert_eq!(outcome["results"].as_array().map(Vec::len), Some(3));
    assert!(outcome["results"].as_array().unwrap().iter().all(|r| r["success"] == false));
}

#[test]
fn an_instance_that_is_down_is_reported_as_timed_out() {
    let broker = Broker::start();
    let scratch = Scratch::new("timeout");
    let db = scratch.db("engine.db");
    let (node, id) = Running::node(&broker.url(), "app", "h1");
    wait_online(&broker.url(), &db, &id);
    node.stop();
    let started = Instant::now();
    let out = run(&broker.url(), &db, &["send", &id, "ping", "--timeout", "2s", "--retries", "1", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let outcome = json(&out);
    assert_eq!(outcome["timed_out"], serde_json::json!([id]));
    assert_eq!((outcome["attempts"].as_u64(), outcome["success"].as_bool()), (Some(2), Some(false)));
    assert!(started.elapsed() >= Duration::from_secs(2));
}

/// `subnode watch --json` and one `subnode node app` process, once the watch has seen it
/// register; the node's instance id comes last.
fn watching_one_node(url: &str, db: &str) -> (Running, Running, String) {
    let mut watch_cmd = subnode(url, db);
    watch_cmd.args(["watch", "--json"]);
    let watch = Running::start(watch_cmd);
    let (node, id) = Running::node(url, "app", "h1");
    watch.expect("registration", |v| v["event"] == "registered" && v["instance_id"] == id.as_str());
    (watch, node, id)
}

#[test]
fn silence_makes_an_instance_missing_and_kill_9_makes_it_lost() {
    let broker = Broker::start();
    let scratch = Scratch::new("missing-lost");
    let (watch, node, id) = watching_one_node(&broker.url(), &scratch.db("engine.db"));

    // Frozen, the node keeps its connection but sends nothing: three 1 s intervals later it
    // is missing (the broker's keep-alive would take 90 s to notice).
    node.signal("-STOP");
    watch.expect("missing", status_event(&id, "missing"));
    // Killed, its connection drops without DISCONNECT and the broker publishes the will.
    node.signal("-KILL");
    watch.expect("lost", status_event(&id, "lost"));
}

#[test]
fn watch_shows_the_engine_losing_and_regaining_the_broker() {
    let mut broker = Broker::start();
    let scratch = Scratch::new("watch-broker");
    let (watch, _node, _id) = watching_one_node(&broker.url(), &scratch.db("engine.db"));
    broker.restart();
    let lost = watch.expect("the broker lost", |v| v["event"] == "broker_disconnected");
    assert!(lost["error"].as_str().is_some_and(|e| !e.is_empty()) && lost["retry_in_ms"].is_u64(), "{lost}");
    watch.expect("the broker back", |v| v["event"] == "broker_connected");
}

#[test]
fn the_registry_survives_an_engine_restart() {
    let mut broker = Broker::start();
    let scratch = Scratch::new("restart");
    let db = scratch.db("engine.db");
    let (watch, _node, id) = watching_one_node(&broker.url(), &db);
    // Let a heartbeat land and be written.
    std::thread::sleep(Duration::from_millis(2500));
    watch.stop();
    broker.kill();

    // No broker at all: the database alone still knows the instance and its metrics.
    let out = run(&broker.url(), &db, &["nodes", "--offline", "--json"]);
    let list = json(&out);
    let instance = list.as_array().unwrap().iter().find(|i| i["instance_id"] == id.as_str()).expect("instance kept");
    assert_eq!(instance["node_name"], "app");
    assert!(instance["heartbeats"].as_u64() >= Some(1), "{instance}");
    assert!(instance["memory_mb"].is_u64(), "{instance}");
}

#[test]
fn two_engines_on_a_shared_subscription_ingest_every_heartbeat_exactly_once() {
    let broker = Broker::start();
    let scratch = Scratch::new("share");
    let watch = |db: &str, share: bool| {
        let mut cmd = subnode(&broker.url(), &scratch.db(db));
        cmd.args(["watch", "--json", "--heartbeats"]);
        if share {
            cmd.args(["--share", "ingest"]);
        }
        Running::start(cmd)
    };
    let (a, b, observer) = (watch("a.db", true), watch("b.db", true), watch("observer.db", false));
    // All three subscribed before the first heartbeat: their connections take a moment.
    std::thread::sleep(Duration::from_secs(2));
    let nodes: Vec<(Running, String)> =
        ["h1", "h2", "h3", "h4"].iter().map(|h| Running::node(&broker.url(), "app", h)).collect();
    std::thread::sleep(Duration::from_secs(5));
    for (node, _) in nodes {
        node.stop();
    }
    // Whatever was in flight arrives.
    std::thread::sleep(Duration::from_secs(1));

    let heartbeats = |r: &Running| -> BTreeMap<(String, String), usize> {
        let mut seen = BTreeMap::new();
        for v in r.events().into_iter().filter(|v| v["event"] == "heartbeat") {
            let key = (v["instance_id"].as_str().unwrap().to_owned(), v["timestamp"].as_str().unwrap().to_owned());
            *seen.entry(key).or_insert(0) += 1;
        }
        seen
    };
    let (seen_a, seen_b, all) = (heartbeats(&a), heartbeats(&b), heartbeats(&observer));
    assert!(all.values().sum::<usize>() >= 12, "too few heartbeats to tell: {all:?}");
    assert!(
        !seen_a.is_empty() && !seen_b.is_empty(),
        "the broker gave one engine everything: a {seen_a:?} b {seen_b:?}"
    );
    // Exactly once between them: every heartbeat the observer saw went to one engine, once.
    let mut merged = seen_a.clone();
    for (k, n) in &seen_b {
        assert!(!seen_a.contains_key(k), "{k:?} ingested by both engines");
        *merged.entry(k.clone()).or_insert(0) += n;
    }
    assert_eq!(merged, all);
}

#[test]
fn the_embedded_rumqttd_broker_carries_a_command_round_trip() {
    let port = free_port();
    let url = format!("mqtt://127.0.0.1:{port}");
    let scratch = Scratch::new("rumqttd");
    let db = scratch.db("engine.db");
    let mut broker_cmd = subnode(&url, &db);
    broker_cmd.args(["broker", "--port", &port.to_string()]);
    let _broker = Running::start(broker_cmd);
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "subnode broker did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_node, id) = Running::node(&url, "app", "h1");
    wait_online(&url, &db, &id);
    let out = run(&url, &db, &["send", "app/*", "status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let outcome = json(&out);
    assert_eq!(outcome["results"][0]["data"]["status"], "running");
}

#[test]
fn bad_settings_and_arguments_are_refused_with_exit_code_2() {
    let scratch = Scratch::new("usage");
    let db = scratch.db("engine.db");
    let out = run("nope", &db, &["nodes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SUBNODE_BROKER_URL"));
    let out = run("mqtt://127.0.0.1:1", &db, &["send", "a/*", "ping", "--params-json", "[1]"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JSON object"));
}

#[test]
fn mqtts_with_the_nodes_tls_settings_carries_a_command() {
    // The test kit's TLS broker: its own port speaks TLS with a certificate for `localhost`.
    let (broker, pki, _plain) = subnodesync_testkit::tls::tls_broker(false);
    let ca = pki.ca.display().to_string();
    let url = format!("mqtts://localhost:{}", broker.port());
    let scratch = Scratch::new("tls");
    let db = scratch.db("engine.db");
    let mut node_cmd = subnode(&url, &db);
    node_cmd.env("SUBNODE_TLS_CA", &ca).args(["node", "app", "--hostname", "h1"]);
    let node = Running::start(node_cmd);
    let id = format!("app-h1-{}", node.child.id());

    let send = |ca_flag: &str| {
        let mut cmd = subnode(&url, &db);
        cmd.args(["--tls-ca", ca_flag, "send", &id, "ping", "--timeout", "5s", "--json"]).output().expect("run subnode")
    };
    let deadline = Instant::now() + WAIT;
    let out = loop {
        let out = send(&ca);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["results"][0]["message"], "pong");

    // A CA file that is not there is a settings error, before any connection.
    let out = send("/nonexistent/ca.pem");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SUBNODE_TLS_CA"));
}

#[test]
fn ws_and_wss_urls_serve_subnode_node_and_send_beside_mqtt_on_one_broker() {
    // amqtt: a plain, a ws:// and a wss:// listener on one broker.
    let broker = subnodesync_testkit::amqtt::Amqtt::start_with_wss();
    let ca = broker.pki().ca.display().to_string();
    let mqtt = format!("mqtt://127.0.0.1:{}", broker.port());
    let scratch = Scratch::new("websocket");
    let db = scratch.db("engine.db");
    let (_ws_node, ws_id) = Running::node(&broker.url(), "app", "ws-host");
    let mut wss_cmd = subnode(&broker.wss_url(), &db);
    wss_cmd.env("SUBNODE_TLS_CA", &ca).args(["node", "app", "--hostname", "wss-host"]);
    let wss_node = Running::start(wss_cmd);
    let wss_id = format!("app-wss-host-{}", wss_node.child.id());
    wait_online(&mqtt, &db, &ws_id);
    wait_online(&mqtt, &db, &wss_id);

    // The engine on each transport reaches both nodes.
    for (url, tls) in [(broker.url(), false), (broker.wss_url(), true), (mqtt.clone(), false)] {
        let mut cmd = subnode(&url, &db);
        if tls {
            cmd.env("SUBNODE_TLS_CA", &ca);
        }
        let out = cmd.args(["send", "app/*", "ping", "--timeout", "5s", "--json"]).output().expect("run subnode");
        assert!(out.status.success(), "{url}: {}", String::from_utf8_lossy(&out.stderr));
        let outcome = json(&out);
        let mut answered: Vec<&str> =
            outcome["results"].as_array().unwrap().iter().filter_map(|r| r["instance_id"].as_str()).collect();
        answered.sort_unstable();
        let mut expected = [ws_id.as_str(), wss_id.as_str()];
        expected.sort_unstable();
        assert_eq!(answered, expected, "{url}");
    }
}

#[test]
fn prune_forgets_an_old_offline_instance_and_clears_its_retained_status() {
    let broker = Broker::start();
    let scratch = Scratch::new("prune");
    let db = scratch.db("engine.db");
    let (node, id) = Running::node(&broker.url(), "app", "h1");
    wait_online(&broker.url(), &db, &id);
    node.stop();
    // The engine sees the clean stop: status offline (retained), register cleared.
    wait_status(&broker.url(), &db, &id, "offline");

    // Too young to prune, then old enough.
    assert_eq!(json(&run(&broker.url(), &db, &["prune", "--older-than", "1h", "--json"])), serde_json::json!([]));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(json(&run(&broker.url(), &db, &["prune", "--older-than", "1s", "--json"])), serde_json::json!([id]));

    // Gone from this registry, and from the broker: an engine with a fresh database learns of
    // no such instance.
    let listed = json(&run(&broker.url(), &db, &["nodes", "--json", "--offline"]));
    assert!(!listed.as_array().unwrap().iter().any(|i| i["instance_id"] == id.as_str()), "{listed}");
    let fresh = json(&run(&broker.url(), &scratch.db("fresh.db"), &["nodes", "--json"]));
    assert_eq!(fresh, serde_json::json!([]));
}

/// Text a client of the broker chose never reaches the terminal raw: `nodes` shows escape
/// sequences, newlines and bidi overrides as visible escapes (as `watch`, `send` and `history`
/// do, through the same `Printable`), and `--json` stays exact.
#[test]
fn text_from_the_wire_cannot_drive_the_terminal() {
    let broker = Broker::start();
    let scratch = Scratch::new("terminal");
    let db = scratch.db("engine.db");
    let hostile_version = "\u{1b}[2J\u{1b}[31mPWNED\nfake line\u{202e}";
    let register = serde_json::json!({
        "timestamp": "2024-01-01T12:00:00Z", "node_name": "evil", "instance_id": "evil-h-1",
        "version": hostile_version, "pid": 1, "start_time": "2024-01-01T12:00:00Z",
        "capabilities": ["mqtt_control", "heartbeat"], "metadata": {"hostname": "h"},
        "node_version": {"git_version": "v", "git_commit": "c", "build_date": "d", "go_version": "g", "platform": "p"}
    });
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let client = subnodesync_testkit::Engine::connect(broker.port(), &[]).await;
        client.publish_retained("subnodesync/evil/evil-h-1/register", register.to_string()).await;
        // The retained message is on the broker once a fresh subscriber gets it.
        let mut probe = subnodesync_testkit::Engine::connect(broker.port(), &["subnodesync/evil/#"]).await;
        probe.expect_on("subnodesync/evil/evil-h-1/register").await;
    });

    let table = run(&broker.url(), &db, &["nodes"]);
    let text = String::from_utf8(table.stdout).expect("UTF-8");
    assert!(text.contains("evil-h-1"), "{text}");
    assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}'), "raw controls on the terminal: {text:?}");
    assert!(text.contains(r"\u{1b}[2J\u{1b}[31mPWNED\u{a}fake line\u{202e}"), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains("fake line")).count(), 1, "a field faked a line: {text}");

    let listed = json(&run(&broker.url(), &db, &["nodes", "--json"]));
    let evil = listed.as_array().expect("a list").iter().find(|i| i["instance_id"] == "evil-h-1").expect("listed");
    assert_eq!(evil["version"], hostile_version, "--json must stay exact");
}

/// Every numeric and duration flag is range-checked before anything connects: a usage error
/// (exit 2) that names the flag, never a panic or an overflow.
#[test]
fn out_of_range_flags_are_usage_errors() {
    let scratch = Scratch::new("ranges");
    let db = scratch.db("engine.db");
    // No broker listens there: nothing may get as far as connecting.
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    for args in [
        &["send", "x", "ping", "--retries", "4294967295"][..],
        &["send", "x", "ping", "--timeout", "18446744073709551615s"],
        &["send", "x", "ping", "--timeout", "0s"],
        &["--heartbeat-interval", "100000h", "nodes"],
        &["history", "--limit", "0"],
        &["prune", "--older-than", "18446744073709551615h"],
        &["watch", "--prune-after", "99999999999h"],
        &["demo", "--duration", "18446744073709551615s"],
        &["--max-instances", "0", "nodes"],
        &["--max-instances", "18446744073709551616", "nodes"],
        &["--max-stored-json", "65537", "nodes"],
        &["--history-max-age", "59s", "history"],
        &["--history-max-age", "213503982334601d", "history"],
        &["--history-max-commands", "0", "history"],
    ] {
        let out = run(&url, &db, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("invalid value"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    for (variable, value) in [
        ("SUBNODE_HEARTBEAT_INTERVAL", "100000h"),
        ("SUBNODE_MAX_INSTANCES", "-5"),
        ("SUBNODE_HISTORY_MAX_COMMANDS", "many"),
    ] {
        let bad_env = subnode(&url, &db).env(variable, value).args(["nodes"]).output().expect("run");
        let stderr = String::from_utf8_lossy(&bad_env.stderr);
        assert_eq!(bad_env.status.code(), Some(2), "{variable}={value}: {stderr}");
        assert!(stderr.contains(variable), "{variable}={value}: {stderr}");
    }
}

/// A file that is not the engine's database is named as such (exit 3) and left untouched; a
/// row the engine cannot read is skipped with a warning and the others are listed.
#[test]
fn a_file_that_is_not_a_database_is_refused_and_an_unreadable_row_is_skipped() {
    let scratch = Scratch::new("not-a-db");
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let notes = scratch.db("notes.txt");
    let text = "shopping list: milk, eggs, and a database that is not one\n".repeat(10);
    std::fs::write(&notes, &text).expect("write the file");
    for args in [&["nodes", "--offline"][..], &["history"], &["nodes"]] {
        let out = run(&url, &notes, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains("is not a SubNodeSync database"), "{args:?}: {stderr}");
    }
    assert_eq!(std::fs::read_to_string(&notes).expect("read"), text, "the file was changed");

    let db = scratch.db("engine.db");
    assert!(run(&url, &db, &["history"]).status.success(), "a new database is made");
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute_batch(
        "INSERT INTO instances (instance_id, node_name, status, first_seen_ms, last_seen_ms, status_changed_ms)
             VALUES ('a-h-1', 'a', 'offline', 1, 2, 3), ('a-h-2', 'a', 'offline', 1, 2, 3);
         UPDATE instances SET pid = 'not a number' WHERE instance_id = 'a-h-1';",
    )
    .expect("write the rows");
    let out = run(&url, &db, &["nodes", "--offline", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let ids: Vec<Value> = json(&out).as_array().expect("a list").iter().map(|i| i["instance_id"].clone()).collect();
    assert_eq!(ids, [Value::from("a-h-2")]);
    assert!(stderr.contains("unreadable row") && stderr.contains("skipped"), "{stderr}");
}

/// `history` pages backwards with `--before`, saying how to get the next page, and keeps only
/// `--history-max-commands` commands.
#[test]
fn history_pages_and_keeps_only_as_many_commands_as_it_is_told() {
    let broker = Broker::start();
    let scratch = Scratch::new("history-pages");
    let db = scratch.db("engine.db");
    let (_node, id) = Running::node(&broker.url(), "app", "h1");
    wait_online(&broker.url(), &db, &id);
    let mut sent = Vec::new();
    for n in 0..4 {
        let text = format!("text={n}");
        let out = run(&broker.url(), &db, &["--history-max-commands", "3", "send", &id, "echo", "-p", &text, "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        sent.push(json(&out)["request_id"].as_str().expect("a request id").to_owned());
    }
    let all = json(&run(&broker.url(), &db, &["history", "--json"]));
    let kept: Vec<&str> = all.as_array().expect("a list").iter().filter_map(|c| c["request_id"].as_str()).collect();
    assert_eq!(kept, [&sent[3], &sent[2], &sent[1]], "the oldest went, the newest three stayed");

    let first = run(&broker.url(), &db, &["history", "--limit", "2"]);
    let text = String::from_utf8(first.stdout).expect("UTF-8");
    let hint = format!("more: subnode history --limit 2 --before {}", sent[2]);
    assert!(text.lines().any(|l| l == hint), "{text}");
    let next = json(&run(&broker.url(), &db, &["history", "--limit", "2", "--before", &sent[2], "--json"]));
    assert_eq!(next.as_array().map(Vec::len), Some(1));
    assert_eq!(next[0]["request_id"], sent[1].as_str());
    assert_eq!(next[0]["results"][0]["data"], serde_json::json!({"timeout_ms": 9000, "text": 1}));

    let unknown = run(&broker.url(), &db, &["history", "--before", "no-such-request"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no command \"no-such-request\" in the history"));
}

/// The password can come from a file (`--password-file`, `SUBNODE_PASSWORD_FILE`), so it is in
/// no command line; giving both a password and a file is a usage error.
#[test]
fn the_password_can_come_from_a_file() {
    let broker = Broker::start_with(|dir| {
        let passwords = subnodesync_testkit::password_file(dir, &[("engine", "engine-pw")]);
        format!("allow_anonymous false\npassword_file {}\n", passwords.display())
    });
    let scratch = Scratch::new("password-file");
    let db = scratch.db("engine.db");
    let file = scratch.db("password");
    std::fs::write(&file, "engine-pw\n").expect("write the password file");
    let wrong = scratch.db("wrong");
    std::fs::write(&wrong, "nope\n").expect("write the password file");

    let flag = run(&broker.url(), &db, &["--username", "engine", "--password-file", &file, "nodes", "--json"]);
    assert!(flag.status.success(), "--password-file: {}", String::from_utf8_lossy(&flag.stderr));
    let env = subnode(&broker.url(), &db)
        .env("SUBNODE_USERNAME", "engine")
        .env("SUBNODE_PASSWORD_FILE", &file)
        .args(["nodes", "--json"])
        .output()
        .expect("run");
    assert!(env.status.success(), "SUBNODE_PASSWORD_FILE: {}", String::from_utf8_lossy(&env.stderr));
    // The broker's refusal is reported at once with its reason, never hidden behind a stale
    // database or a "did not answer".
    for command in [&["nodes"][..], &["send", "x", "ping"], &["watch"], &["prune"]] {
        let mut args = vec!["--username", "engine", "--password-file", wrong.as_str()];
        args.extend_from_slice(command);
        let refused = run(&broker.url(), &db, &args);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(3), "{command:?}: {stderr}");
        assert!(
            stderr.contains("cannot use the broker: the broker refused the connection: not authorized"),
            "{command:?}: {stderr}"
        );
        assert!(!stderr.contains("did not answer"), "{command:?}: {stderr}");
    }
    let both = subnode(&broker.url(), &db)
        .env("SUBNODE_PASSWORD", "engine-pw")
        .env("SUBNODE_PASSWORD_FILE", &file)
        .args(["nodes"])
        .output()
        .expect("run");
    assert_eq!(both.status.code(), Some(2), "{}", String::from_utf8_lossy(&both.stderr));
    assert!(String::from_utf8_lossy(&both.stderr).contains("not both"));
}

/// The instance ids in a `--json` list, sorted.
fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        list.as_array().expect("a list").iter().filter_map(|i| i["instance_id"].as_str().map(str::to_owned)).collect();
    ids.sort_unstable();
    ids
}

/// `nodes --where` narrows the listing (JSON and table, online and `--offline`) with `send
/// --where`'s keys; with no `status=` it lists instances of every status, not only the reachable
/// ones `send` takes.
#[test]
fn nodes_where_lists_only_the_matching_instances() {
    let broker = Broker::start();
    let url = broker.url();
    let scratch = Scratch::new("nodes-where");
    let db = scratch.db("engine.db");
    let node = |name: &str, host: &str, version: &str| {
        let mut cmd = subnode(&url, "/nonexistent/unused.db");
        cmd.env("SUBNODE_VERSION", version);
        Running::node_from(cmd, name, host)
    };
    let (_app1, app1) = node("app", "h1", "1.0.0");
    let (_app2, app2) = node("app", "h2", "2.0.0");
    let (other, other1) = node("other", "h1", "1.0.0");
    for id in [&app1, &app2, &other1] {
        wait_online(&url, &db, id);
    }
    other.stop();
    wait_status(&url, &db, &other1, "offline");

    let listed = |args: &[&str]| {
        let out = run(&url, &db, args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        ids(&json(&out))
    };
    // Sorted lists: `app-...` before `other-...`.
    assert_eq!(listed(&["nodes", "--json", "--where", "version=2.0.0"]), [app2.as_str()]);
    assert_eq!(listed(&["nodes", "--json", "-w", "node=app", "-w", "host=h1"]), [app1.as_str()]);
    assert_eq!(listed(&["nodes", "--json", "--where", "hostname=h1"]), [app1.as_str(), other1.as_str()]);
    assert_eq!(listed(&["nodes", "--json", "--where", "status=offline"]), [other1.as_str()]);
    assert_eq!(listed(&["nodes", "--json", "--where", "status=lost"]), Vec::<String>::new());
    assert_eq!(listed(&["nodes", "--offline", "--json", "--where", "version=1.0.0"]), [app1.as_str(), other1.as_str()]);

    let table = run(&url, &db, &["nodes", "--where", "node=app", "--where", "version=1.0.0"]);
    let text = String::from_utf8(table.stdout).expect("UTF-8");
    assert!(text.contains(&app1) && !text.contains(&app2) && !text.contains(&other1), "{text}");

    // `send` takes the same filters, through the same parser.
    let out = run(&url, &db, &["send", "*", "ping", "--where", "host=h2", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let outcome = json(&out);
    assert_eq!(ids(&outcome["results"]), [app2.as_str()]);
}

/// A filter `--where` does not know is a usage error (exit 2) naming it, before anything connects.
#[test]
fn a_bad_where_filter_is_a_usage_error_that_names_it() {
    let scratch = Scratch::new("bad-where");
    let db = scratch.db("engine.db");
    // No broker listens there: nothing may get as far as connecting.
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    for (filter, says) in [
        ("colour=red", "--where colour: expected node, version, host or status"),
        ("status=asleep", "--where status=asleep: unknown status"),
        ("version", r#"--where "version": expected KEY=VALUE"#),
    ] {
        for command in [&["nodes"][..], &["nodes", "--offline", "--json"], &["send", "*", "ping"]] {
            let mut args = command.to_vec();
            args.extend(["--where", filter]);
            let out = run(&url, &db, &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(says), "{args:?}: {stderr}");
        }
    }
}

/// Unix milliseconds of `YYYY-MM-DDTHH:MM:SS.mmmZ`, counted day by day: a check on the engine's
/// formatter that shares none of its arithmetic. Panics on anything else.
fn parse_rfc3339(text: &str) -> i64 {
    let b = text.as_bytes();
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')];
    assert!(b.len() == 24 && seps.iter().all(|&(at, c)| b[at] == c), "not RFC 3339 UTC with ms: {text:?}");
    let n = |from: usize, to: usize| -> i64 { text[from..to].parse().unwrap_or_else(|_| panic!("{text:?}")) };
    let (year, month, day) = (n(0, 4), n(5, 7), n(8, 10));
    let leap = |y: i64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = |m: i64| match m {
        2 if leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    assert!((1..=12).contains(&month) && (1..=month_days(month)).contains(&day), "{text:?}");
    let days = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum::<i64>()
        + (1..month).map(month_days).sum::<i64>()
        + day
        - 1;
    ((days * 24 + n(11, 13)) * 60 + n(14, 16)) * 60_000 + n(17, 19) * 1000 + n(20, 23)
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    i64::try_from(since_epoch.as_millis()).expect("in range")
}

/// `--json` prints an RFC 3339 `*_at` beside every Unix-millisecond time (kept as it was), and
/// `history` shows when a command was sent the same way.
#[test]
fn times_are_rfc3339_beside_their_unix_milliseconds() {
    let broker = Broker::start();
    let url = broker.url();
    let scratch = Scratch::new("rfc3339");
    let db = scratch.db("engine.db");
    let before = now_ms();
    let (_node, id) = Running::node(&url, "app", "h1");
    wait_online(&url, &db, &id);
    let out = run(&url, &db, &["send", &id, "ping", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result = &json(&out)["results"][0];
    assert_eq!(parse_rfc3339(result["received_at"].as_str().expect("received_at")), result["received_ms"]);

    let history = json(&run(&url, &db, &["history", "--json"]));
    let (command, result) = (&history[0], &history[0]["results"][0]);
    let sent_at = command["sent_at"].as_str().expect("sent_at");
    assert_eq!(parse_rfc3339(sent_at), command["sent_ms"]);
    assert_eq!(parse_rfc3339(result["received_at"].as_str().expect("received_at")), result["received_ms"]);
    let text = String::from_utf8(run(&url, &db, &["history"]).stdout).expect("UTF-8");
    assert!(text.starts_with(&format!("{sent_at} ")), "{text}");

    // A watch ingests a heartbeat (`nodes` and `send` take none) and, stopped, writes it.
    let mut watch_cmd = subnode(&url, &db);
    watch_cmd.args(["watch", "--json", "--heartbeats"]);
    let watch = Running::start(watch_cmd);
    watch.expect("a heartbeat", |v| v["event"] == "heartbeat" && v["instance_id"] == id.as_str());
    watch.stop();
    let after = now_ms();
    let list = json(&run(&url, &db, &["nodes", "--offline", "--json"]));
    let instance = list.as_array().expect("a list").iter().find(|i| i["instance_id"] == id.as_str()).expect("listed");
    let at = |field: &str| parse_rfc3339(instance[field].as_str().unwrap_or_else(|| panic!("{field}: {instance}")));
    assert_eq!(at("registered_at"), instance["registered_ms"]);
    for field in ["sent_at", "registered_at", "first_seen_at", "last_seen_at", "status_changed_at", "last_heartbeat_at"]
    {
        let time = if field == "sent_at" { parse_rfc3339(sent_at) } else { at(field) };
        assert!((before..=after).contains(&time), "{field} is not within the test: {instance}");
    }
}

/// Statuses are coloured on a terminal or with `CLICOLOR_FORCE`, and never with `NO_COLOR`.
#[test]
fn no_color_turns_off_the_colour_clicolor_force_turns_on() {
    let scratch = Scratch::new("no-color");
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let db = scratch.db("engine.db");
    assert!(run(&url, &db, &["history"]).status.success(), "a new database is made");
    rusqlite::Connection::open(&db)
        .expect("open")
        .execute_batch(
            "INSERT INTO instances (instance_id, node_name, status, first_seen_ms, last_seen_ms, status_changed_ms)
                 VALUES ('a-h-1', 'a', 'online', 1, 2, 3), ('a-h-2', 'a', 'lost', 1, 2, 3);",
        )
        .expect("write the rows");
    let table = |env: &[(&str, &str)]| {
        let mut cmd = subnode(&url, &db);
        cmd.envs(env.iter().copied()).args(["nodes", "--offline"]);
        let out = cmd.output().expect("run subnode");
        assert!(out.status.success(), "{env:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let forced = table(&[("CLICOLOR_FORCE", "1")]);
    assert!(forced.contains("\u{1b}[32monline\u{1b}[0m") && forced.contains("\u{1b}[31mlost\u{1b}[0m"), "{forced:?}");
    // An empty NO_COLOR is no NO_COLOR (no-color.org).
    assert_eq!(table(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "")]), forced);
    for env in
        [&[][..], &[("NO_COLOR", "1")], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], &[("CLICOLOR_FORCE", "0")]]
    {
        let plain = table(env);
        assert!(plain.contains("a-h-2") && !plain.contains('\u{1b}'), "{env:?}: {plain:?}");
    }
}
