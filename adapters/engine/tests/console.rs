//! `subnode serve` as its users meet it: over HTTP, against a real mosquitto and real `subnode
//! node` processes. The API's objects, a command round trip, the event stream, the metrics as
//! Prometheus text, and who may do what.

mod subnode;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use subnode::http::{self, get, post_json};
use subnode::*;
use subnodesync_testkit::{Broker, WAIT};

/// The next event for which `pred` holds.
fn next_event(events: &mpsc::Receiver<Value>, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) if pred(&event) => return event,
            Ok(_) => {}
            Err(e) => panic!("no {what} within {WAIT:?}: {e}"),
        }
    }
}

/// Waits until the console lists `instance` as online.
fn online_in_console(base: &str, instance: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = get(base, "/api/nodes").json();
        if let Some(i) = list.as_array().into_iter().flatten().find(|i| i["instance_id"] == instance) {
            if i["status"] == "online" && i["heartbeats"].as_u64() > Some(0) {
                return i.clone();
            }
        }
        assert!(Instant::now() < deadline, "{instance} not online in the console within {WAIT:?}: {list}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The fields of an instance that do not move between two reads a moment apart.
fn settled(instance: &Value) -> Value {
    let keys = ["instance_id", "node_name", "hostname", "version", "pid", "start_time", "status", "registered"];
    keys.iter().map(|k| ((*k).to_owned(), instance[*k].clone())).collect::<serde_json::Map<_, _>>().into()
}

#[test]
fn the_api_serves_the_registry_and_commands_as_the_cli_prints_them() {
    let broker = Broker::start();
    let scratch = Scratch::new("console-api");
    let db = scratch.db("engine.db");
    let (_serve, base) = Running::serve(&broker.url(), &db, &[]);
    let (_a, a) = Running::node(&broker.url(), "shop", "h1");
    let (_b, b) = Running::node(&broker.url(), "shop", "h2");
    online_in_console(&base, &a);
    online_in_console(&base, &b);

    // The same objects as `subnode nodes --json`, filters included, plus each instance's desired
    // state (nothing desired here: in sync without a report).
    let api = get(&base, "/api/nodes");
    assert_eq!((api.status, api.header("content-type")), (200, Some("application/json")));
    let cli = json(&run(&broker.url(), &scratch.db("cli.db"), &["nodes", "--json"]));
    let by_id = |list: &Value| -> BTreeMap<String, Value> {
        list.as_array()
            .expect("a list")
            .iter()
            .map(|i| (i["instance_id"].as_str().unwrap().to_owned(), settled(i)))
            .collect()
    };
    assert_eq!(by_id(&api.json()), by_id(&cli));
    let mut first = api.json()[0].as_object().cloned().expect("an object");
    let sync: Vec<Value> = ["desired_version", "reported_version", "in_sync"]
        .iter()
        .map(|k| first.remove(*k).unwrap_or_else(|| panic!("no {k}")))
        .collect();
    assert_eq!(sync, [json!(0), Value::Null, json!(true)]);
    assert_eq!(Some(first.len()), cli[0].as_object().map(|o| o.len()), "the same fields");
    let h2 = get(&base, "/api/nodes?host=h2").json();
    assert_eq!(
        h2.as_array().map(|l| l.iter().map(|i| i["instance_id"].clone()).collect::<Vec<_>>()),
        Some(vec![json!(b)])
    );

    // A command round trip, its request id chosen by the caller.
    let sent = post_json(
        &base,
        "/api/commands",
        &json!({
            "target": "shop/*", "command": "echo", "parameters": {"text": "hi"}, "timeout": "5s", "request_id": "ui-test-1"
        }),
    );
    assert_eq!(sent.status, 200, "{}", sent.body);
    let sent = sent.json();
    assert_eq!(sent["request_id"], "ui-test-1");
    assert_eq!(sent["outcome"]["verdict"], "succeeded");
    assert_eq!(sent["outcome"]["answered"], 2);
    let results = sent["results"].as_array().expect("results");
    assert!(results.iter().all(|r| r["message"] == "echoed" && r["data"]["text"] == "hi" && r["state"] == "done"));

    // Narrowed by host: only h1 is asked.
    let one =
        post_json(&base, "/api/commands", &json!({"target": "*", "command": "ping", "where": {"host": "h1"}})).json();
    assert_eq!(one["outcome"]["expected"], json!([a]));

    // The command in the history, alone and in the instance's page.
    let recorded = get(&base, "/api/commands/ui-test-1").json();
    assert_eq!((recorded["command"].as_str(), recorded["results"].as_array().map(Vec::len)), (Some("echo"), Some(2)));
    let page = get(&base, &format!("/api/nodes/{a}")).json();
    assert_eq!(page["register"]["instance_id"], a.as_str());
    assert!(page["register"]["capabilities"].as_array().is_some_and(|c| !c.is_empty()));
    let history: Vec<&str> =
        page["history"].as_array().expect("history").iter().filter_map(|c| c["command"].as_str()).collect();
    assert_eq!(history, ["ping", "echo"]);
    // The chart's first sample is taken within a second of the first heartbeat.
    let deadline = Instant::now() + WAIT;
    let sampled = || get(&base, &format!("/api/nodes/{a}")).json()["trend"].as_array().is_some_and(|t| !t.is_empty());
    while !sampled() {
        assert!(Instant::now() < deadline, "no chart sample within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Bad requests are typed errors, not hangs or 500s.
    let unknown = get(&base, "/api/nodes/nobody");
    assert_eq!((unknown.status, unknown.json()["error"].is_string()), (404, true));
    assert_eq!(get(&base, "/api/commands/nothing-sent").status, 404);
    // Too large for any node to read (and for the MQTT client, which would drop the connection
    // rather than refuse it), or a target no topic can carry: refused, and the engine stays up.
    let huge = post_json(
        &base,
        "/api/commands",
        &json!({"target": "shop/*", "command": "echo", "parameters": {"pad": "x".repeat(70_000)}}),
    );
    assert_eq!(huge.status, 400, "{}", huge.body);
    for target in ["sh+op/*", "shop/#", "/a-h-1"] {
        let bad = post_json(&base, "/api/commands", &json!({"target": target, "command": "ping"}));
        assert_eq!(bad.status, 400, "{target}: {}", bad.body);
    }
    assert_eq!(get(&base, "/api/engine").json()["connected"], true);
    assert_eq!(
        post_json(&base, "/api/commands", &json!({"target": "shop/*", "command": "ping"})).json()["outcome"]
            ["answered"],
        2
    );
    let asleep = get(&base, "/api/nodes?status=asleep");
    assert_eq!(asleep.status, 400, "{}", asleep.body);
    let bad = post_json(&base, "/api/commands", &json!({"target": "shop/*", "command": "ping", "timeout": "forever"}));
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().is_some_and(|e| e.starts_with("timeout:")), "{}", bad.body);
}

#[test]
fn events_stream_status_changes_and_results_as_they_happen() {
    let broker = Broker::start();
    let scratch = Scratch::new("console-events");
    let (_serve, base) = Running::serve(&broker.url(), &scratch.db("engine.db"), &[]);
    let events = http::events(&base, "/api/events?instances=1", &[]);
    let (node, id) = Running::node(&broker.url(), "shop", "h1");
    next_event(&events, "its registration", |e| e["event"] == "registered" && e["instance_id"] == id.as_str());
    let rows = next_event(&events, "a table update", |e| e["event"] == "instances");
    assert!(rows["instances"].as_array().is_some_and(|r| r.iter().any(|r| r["instance_id"] == id.as_str())));

    let sent = post_json(&base, "/api/commands", &json!({"target": id, "command": "ping"}));
    assert_eq!(sent.status, 200);
    let result = next_event(&events, "the result", |e| e["event"] == "result");
    assert_eq!(
        (result["result"]["message"].as_str(), result["result"]["instance_id"].as_str()),
        (Some("pong"), Some(id.as_str()))
    );

    node.signal("-KILL");
    next_event(&events, "lost", |e| e["event"] == "status" && e["instance_id"] == id.as_str() && e["to"] == "lost");
}

/// Parses Prometheus' text format strictly enough to catch a malformed line: every sample line is
/// `name{labels} value`, every metric has `# HELP` and `# TYPE` first.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut typed = std::collections::HashSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            typed.insert(name.to_owned());
        } else if line.starts_with("# HELP ") || line.is_empty() {
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample: {line}"));
            let name = series.split('{').next().unwrap_or_default();
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
            assert!(typed.contains(name), "{name} has no # TYPE before it");
            if let Some(labels) = series.strip_prefix(name) {
                assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')), "{line}");
            }
            samples.insert(series.to_owned(), value.parse().unwrap_or_else(|_| panic!("a number: {line}")));
        }
    }
    samples
}

#[test]
fn metrics_are_prometheus_text_about_the_fleet_and_the_engine() {
    let broker = Broker::start();
    let scratch = Scratch::new("console-metrics");
    let (_serve, base) = Running::serve(&broker.url(), &scratch.db("engine.db"), &[]);
    let (_node, id) = Running::node(&broker.url(), "shop", "h1");
    online_in_console(&base, &id);
    assert_eq!(post_json(&base, "/api/commands", &json!({"target": id, "command": "ping"})).status, 200);
    let metrics = get(&base, "/metrics");
    assert_eq!(metrics.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let samples = parse_prometheus(&metrics.body);
    let value = |series: &str| *samples.get(series).unwrap_or_else(|| panic!("no {series} in:\n{}", metrics.body));
    assert_eq!(value(r#"subnode_instances{node="shop",status="online"}"#), 1.0);
    assert_eq!(value(r#"subnode_instances{node="shop",status="lost"}"#), 0.0);
    assert!(value(&format!(r#"subnode_instance_memory_bytes{{node="shop",instance="{id}"}}"#)) > 0.0);
    assert!(value(&format!(r#"subnode_instance_uptime_seconds{{node="shop",instance="{id}"}}"#)) >= 0.0);
    assert!(samples.contains_key(&format!(r#"subnode_instance_cpu_percent{{node="shop",instance="{id}"}}"#)));
    assert!(value("subnode_heartbeats_total") >= 1.0);
    assert_eq!(value(r#"subnode_commands_total{outcome="succeeded"}"#), 1.0);
    assert_eq!(value("subnode_broker_connected"), 1.0);
    assert!(value("subnode_ingest_lag_seconds").abs() < 60.0);

    // The shipped Grafana dashboard asks only for metrics that exist.
    let dashboard: Value = serde_json::from_str(include_str!("../grafana/subnode-fleet.json")).expect("JSON");
    let exported: std::collections::HashSet<&str> =
        samples.keys().map(|s| s.split('{').next().unwrap_or_default()).collect();
    let mut used = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            for name in
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("subnode_"))
            {
                assert!(
                    exported.contains(name),
                    "panel {:?} asks for {name}, which /metrics does not have",
                    panel["title"]
                );
                used += 1;
            }
        }
    }
    assert!(used >= 10, "the dashboard uses only {used} metrics");
}

#[test]
fn off_loopback_a_token_is_required_and_with_one_every_door_asks_for_it() {
    let broker = Broker::start();
    let scratch = Scratch::new("console-token");
    let db = scratch.db("engine.db");
    // Refused before listening anywhere: no test binds a non-loopback address.
    let open = run(&broker.url(), &db, &["serve", "--listen", "0.0.0.0:0"]);
    let stderr = String::from_utf8_lossy(&open.stderr);
    assert_eq!(open.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("SUBNODE_HTTP_TOKEN"), "{stderr}");

    let short = scratch.0.join("short-token");
    std::fs::write(&short, "too-short\n").expect("write the token");
    let refused =
        run(&broker.url(), &db, &["serve", "--listen", "127.0.0.1:0", "--token-file", short.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at least 16 characters"));

    let token_file = scratch.0.join("token");
    std::fs::write(&token_file, "s3cret-token-0123456\n").expect("write the token");
    let (serve, base) = Running::serve(&broker.url(), &db, &["--token-file", token_file.to_str().unwrap()]);
    for path in ["/api/nodes", "/api/events", "/metrics"] {
        let denied = get(&base, path);
        assert_eq!((denied.status, denied.header("www-authenticate")), (401, Some("Bearer")), "{path}");
    }
    let wrong = http::request(&base, "GET", "/api/nodes", &[("Authorization", "Bearer s3cret")], "");
    assert_eq!(wrong.status, 401);
    let bearer = [("Authorization", "Bearer s3cret-token-0123456")];
    assert_eq!(http::request(&base, "GET", "/api/nodes", &bearer, "").status, 200);
    assert_eq!(http::request(&base, "GET", "/metrics", &bearer, "").status, 200);
    // The page sends people to the login form.
    let page = get(&base, "/");
    assert_eq!((page.status, page.header("location")), (303, Some("/login")));

    // A wrong token gets the form again; the right one a session cookie the browser keeps to itself.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    assert_eq!(http::request(&base, "POST", "/login", &form, "token=guess").status, 401);
    let login = http::request(&base, "POST", "/login", &form, "token=s3cret-token-0123456");
    assert_eq!(login.status, 303);
    let cookie = login.header("set-cookie").expect("a session cookie").to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("s3cret-token-0123456"), "the token itself in a cookie: {cookie}");
    let session = cookie.split(';').next().expect("name=value");
    let dashboard = http::request(&base, "GET", "/", &[("Cookie", session)], "");
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.header("content-security-policy").is_some_and(|c| c.contains("script-src 'self'")));

    // With the cookie alone a POST is refused: another site could make a browser send it.
    let body = json!({"target": "*", "command": "ping"}).to_string();
    let forged =
        http::request(&base, "POST", "/api/commands", &[("Cookie", session), ("Content-Type", "text/plain")], &body);
    assert_eq!(forged.status, 403);
    let own_page = [("Cookie", session), ("Content-Type", "application/json"), ("X-Subnode-Request", "1")];
    let sent = http::request(&base, "POST", "/api/commands", &own_page, &body);
    assert_ne!(sent.status, 403, "{}", sent.body);
    drop(serve);

    // Without a token (loopback), a page that rebinds its own name to 127.0.0.1 gets nothing,
    // and a POST without the console's header is refused.
    let (_serve, base) = Running::serve(&broker.url(), &scratch.db("open.db"), &[]);
    let rebound = http::request(&base, "GET", "/api/nodes", &[("Host", "evil.example:8080")], "");
    assert_eq!(rebound.status, 403);
    let blind = http::request(&base, "POST", "/api/commands", &[("Content-Type", "text/plain")], &body);
    assert_eq!(blind.status, 403);
}

/// Dropping a `Console` stops it: its open event streams end and it stops listening, while the
/// engine it served goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_console_ends_its_streams_and_stops_listening() {
    use subnodesync_engine::console::{Console, ConsoleConfig};
    use subnodesync_engine::{Engine, EngineConfig};

    let broker = Broker::start();
    let scratch = Scratch::new("console-drop");
    let config = EngineConfig {
        db: scratch.0.join("engine.db").into(),
        ..EngineConfig::from_lookup(&|_| None).expect("defaults")
    }
    .broker_url(&broker.url())
    .expect("a valid url");
    let engine = std::sync::Arc::new(Engine::start(config).await.expect("engine starts"));
    let listen = "127.0.0.1:0".parse().expect("an address");
    let console = Console::start(engine.clone(), ConsoleConfig { listen, token: None }).await.expect("console starts");
    let base = console.url();
    let events = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            let events = http::events(&base, "/api/events", &[]);
            // Blocks until the stream ends: the thread reading it drops its sender.
            while events.recv().is_ok() {}
        }
    });
    // The stream is open once the console answers another request after it.
    let base2 = base.clone();
    let answered =
        tokio::task::spawn_blocking(move || http::get(&base2, "/api/engine").status).await.expect("a request");
    assert_eq!(answered, 200);

    drop(console);
    tokio::time::timeout(WAIT, events).await.expect("the event stream ended").expect("the reader");
    let addr = base.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let refused =
        tokio::task::spawn_blocking(move || std::net::TcpStream::connect(addr).is_err()).await.expect("a try");
    assert!(refused, "still listening after the console was dropped");
    assert!(engine.is_connected() || engine.wait_synced(WAIT).await, "the engine stopped with its console");
    engine.shutdown().await.expect("everything written");
}
