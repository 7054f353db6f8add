//! Desired state through `subnode config` against a real mosquitto: documents published
//! retained with rising versions, reports published by hand as a node publishes them
//! (PROTOCOL.md §15.3), `config show` judging them, pruning clearing them, and refusals made
//! before anything is published. The end-to-end tests with real nodes are at the bottom.

mod subnode;

use std::process::Output;

use serde_json::{json, Value};
use subnode::*;
use subnodesync_testkit::{assert_no_retained, Broker, Engine as Observer};

/// `subnode args...` off the runtime's threads, which drive the observer meanwhile.
async fn subnode_run(url: &str, db: &str, args: &[&str]) -> Output {
    let (url, db) = (url.to_owned(), db.to_owned());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&url, &db, &args)
    })
    .await
    .expect("subnode ran")
}

/// Publishes a retained message as any client could, once the broker has it (the observer
/// sees it come back).
async fn retain(observer: &mut Observer, topic: &str, payload: &str) {
    observer.publish_retained(topic, payload).await;
    observer.expect(&format!("{payload:?} on {topic}"), |m| m.topic == topic && m.text() == payload).await;
}

/// What instance `id` of `app` publishes after a connect: status online (retained).
async fn online(observer: &mut Observer, id: &str) {
    let status =
        json!({"timestamp": "2026-12-02T12:00:00Z", "node_name": "app", "instance_id": id, "status": "online"});
    retain(observer, &format!("subnodesync/app/{id}/status"), &status.to_string()).await;
}

/// A report as `id` publishes it (PROTOCOL.md §15.3).
async fn report(observer: &mut Observer, id: &str, version: u64, settings: Value, rejected: Value) {
    let report = json!({
        "timestamp": "2026-12-02T12:00:01Z", "node_name": "app", "instance_id": id, "version": version,
        "settings": settings, "rejected": rejected, "error": null,
    });
    retain(observer, &format!("subnodesync/app/{id}/reported"), &report.to_string()).await;
}

/// `config show --json`: the states by instance id, and the exit code.
async fn show(url: &str, db: &str) -> (Vec<Value>, Option<i32>) {
    let out = subnode_run(url, db, &["config", "show", "--json"]).await;
    let list = json(&out).as_array().cloned().expect("an array");
    (list, out.status.code())
}

fn state<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter().find(|s| s["instance_id"] == id).unwrap_or_else(|| panic!("no {id} in {list:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_publishes_retained_documents_and_show_judges_each_instances_report() {
    let broker = Broker::start();
    let (url, scratch) = (broker.url(), Scratch::new("desired-set"));
    let db = scratch.db("engine.db");
    let mut observer = Observer::connect(broker.port(), &["subnodesync/#"]).await;
    online(&mut observer, "app-h-1").await;
    online(&mut observer, "app-h-2").await;

    let out =
        subnode_run(&url, &db, &["config", "set", "app/*", "heartbeat_interval=10", "log_level=debug", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let name_doc = json(&out);
    assert_eq!(name_doc["topic"], "subnodesync/app/desired");
    assert_eq!(name_doc["settings"], json!({"heartbeat_interval": 10, "log_level": "debug"}));
    let v1 = name_doc["version"].as_u64().expect("a version");
    // On the wire: retained, the fields in the protocol's order.
    let sent = observer.expect_on("subnodesync/app/desired").await;
    subnodesync_testkit::assert_key_order(sent.text(), &["version", "timestamp", "settings"]);
    assert_eq!(sent.json()["settings"], name_doc["settings"]);

    // A bare instance id takes its node name from the registry; its document overrides one key.
    let out = subnode_run(&url, &db, &["config", "set", "app-h-2", "log_level=warn", "--json"]).await;
    let instance_doc = json(&out);
    assert_eq!(instance_doc["topic"], "subnodesync/app/app-h-2/desired");
    let v2 = instance_doc["version"].as_u64().expect("a version");
    assert!(v2 > v1, "{v2} after {v1}");

    // Nobody reported yet: both drift, and the exit code says so.
    let (list, code) = show(&url, &db).await;
    assert_eq!(code, Some(1));
    let h2 = state(&list, "app-h-2");
    assert_eq!(h2["desired"]["version"], v2);
    assert_eq!(h2["desired"]["settings"], json!({"heartbeat_interval": 10, "log_level": "warn"}));
    assert_eq!(
        (h2["desired"]["name_version"].as_u64(), h2["desired"]["overrides"].clone()),
        (Some(v1), json!(["log_level"]))
    );
    assert_eq!((h2["reported"].clone(), h2["in_sync"].clone()), (Value::Null, json!(false)));

    // h1 applied everything; h2 the right version, but it refused a setting.
    report(&mut observer, "app-h-1", v1, json!({"heartbeat_interval": 10, "log_level": "debug"}), json!({})).await;
    report(&mut observer, "app-h-2", v2, json!({"heartbeat_interval": 10}), json!({"log_level": "unknown setting"}))
        .await;
    let (list, code) = show(&url, &db).await;
    assert_eq!(
        (state(&list, "app-h-1")["in_sync"].clone(), state(&list, "app-h-2")["in_sync"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(code, Some(1));
    let table = subnode_run(&url, &db, &["config", "show"]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("app-h-2: rejected log_level: unknown setting"), "{text}");
    assert!(text.contains("2 instance(s): 1 in sync, 1 drifting (1 of them running)"), "{text}");

    // Once h2 applies it too, every instance is in sync.
    report(&mut observer, "app-h-2", v2, json!({"heartbeat_interval": 10, "log_level": "warn"}), json!({})).await;
    let (list, code) = show(&url, &db).await;
    assert_eq!(code, Some(0), "{list:?}");

    // Unset raises the name's version: h1 (which follows the name's document alone) and h2
    // (whose merged version is the greater of the two) drift again until they report it.
    let out = subnode_run(&url, &db, &["config", "unset", "app/*", "log_level", "--json"]).await;
    let unset = json(&out);
    assert_eq!(unset["settings"], json!({"heartbeat_interval": 10}));
    let v3 = unset["version"].as_u64().expect("a version");
    assert!(v3 > v2);
    let (list, code) = show(&url, &db).await;
    assert_eq!(code, Some(1));
    assert_eq!(state(&list, "app-h-1")["desired"]["settings"], json!({"heartbeat_interval": 10}));
    assert_eq!(state(&list, "app-h-2")["desired"]["version"], v3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_and_targets_are_refused_before_anything_is_published() {
    let broker = Broker::start();
    let (url, scratch) = (broker.url(), Scratch::new("desired-refused"));
    let db = scratch.db("engine.db");
    for (args, code, says) in [
        (&["config", "set", "app/*", "a/b=1"][..], 2, "key \"a/b\""),
        (&["config", "set", "app/*", r#"a={"b":1}"#][..], 2, "values are strings, numbers"),
        (&["config", "set", "app/*", "no-equals-sign"][..], 2, "expected KEY=VALUE"),
        (&["config", "set", "app/*", &format!("a={}", "v".repeat(200))][..], 2, "longer than 128 bytes"),
        (&["config", "set", "*", "a=1"][..], 2, "NODE/* or one instance"),
        (&["config", "set", "app/other-h-1", "a=1"][..], 2, "not an instance id of"),
        (&["config", "set", "app-nobody-1", "a=1"][..], 1, "no instance"),
        (&["config", "unset", "app/*"][..], 2, "KEY"),
    ] {
        let out = subnode_run(&url, &db, args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_no_retained(broker.port(), "subnodesync/app/desired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_clears_an_instances_report_and_its_own_document() {
    let broker = Broker::start();
    let (url, scratch) = (broker.url(), Scratch::new("desired-prune"));
    let db = scratch.db("engine.db");
    let mut observer = Observer::connect(broker.port(), &["subnodesync/#"]).await;
    let offline =
        json!({"timestamp": "2026-12-02T12:00:00Z", "node_name": "app", "instance_id": "app-h-1", "status": "offline"});
    retain(&mut observer, "subnodesync/app/app-h-1/status", &offline.to_string()).await;
    let out = subnode_run(&url, &db, &["config", "set", "app-h-1", "a=1", "--json"]).await;
    let version = json(&out)["version"].as_u64().expect("a version");
    report(&mut observer, "app-h-1", version, json!({"a": 1}), json!({})).await;
    // A stopped instance is shown, and does not count against the exit code.
    let (list, code) = show(&url, &db).await;
    assert_eq!((list.len(), code), (1, Some(0)));

    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let pruned = json(&subnode_run(&url, &db, &["prune", "--older-than", "1s", "--json"]).await);
    assert_eq!(pruned, json!(["app-h-1"]));
    for kind in ["register", "status", "reported", "desired"] {
        assert_no_retained(broker.port(), &format!("subnodesync/app/app-h-1/{kind}")).await;
    }
    assert_eq!(show(&url, &db).await, (vec![], Some(0)));
}

/// Polls `config show --json` until every one of `ids` is in sync; returns the list.
async fn wait_in_sync(url: &str, db: &str, ids: &[&str]) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + subnodesync_testkit::WAIT;
    loop {
        let (list, _) = show(url, db).await;
        let synced = |id: &&str| list.iter().any(|s| s["instance_id"] == *id && s["in_sync"] == true);
        if ids.iter().all(synced) {
            return list;
        }
        assert!(tokio::time::Instant::now() < deadline, "{ids:?} not in sync within the wait: {list:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The heartbeat interval an instance runs with, from its `status` result.
async fn heartbeat_interval(url: &str, db: &str, id: &str) -> Value {
    let out = subnode_run(url, db, &["send", id, "status", "--json"]).await;
    json(&out)["results"][0]["data"]["heartbeat_interval"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_nodes_converge_on_their_names_settings_and_an_instance_override_wins() {
    let broker = Broker::start();
    let (url, scratch) = (broker.url(), Scratch::new("desired-nodes"));
    let db = scratch.db("engine.db");
    let (_first, first) = Running::node(&url, "app", "h1");
    wait_online(&url, &db, &first);

    // Set for the name: the running instance applies it, heartbeat interval included (its
    // configured one is 1 s).
    let out = subnode_run(&url, &db, &["config", "set", "app/*", "heartbeat_interval=5", "mode=eco"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let list = wait_in_sync(&url, &db, &[&first]).await;
    assert_eq!(state(&list, &first)["reported"]["settings"], json!({"heartbeat_interval": 5, "mode": "eco"}));
    assert_eq!(heartbeat_interval(&url, &db, &first).await, 5);

    // An instance started later converges at its first connect.
    let (_second, second) = Running::node(&url, "app", "h2");
    wait_online(&url, &db, &second);
    wait_in_sync(&url, &db, &[&first, &second]).await;

    // The second instance's own document overrides one key; the first keeps the name's.
    subnode_run(&url, &db, &["config", "set", &second, "mode=turbo"]).await;
    let list = wait_in_sync(&url, &db, &[&first, &second]).await;
    assert_eq!(state(&list, &second)["reported"]["settings"], json!({"heartbeat_interval": 5, "mode": "turbo"}));
    assert_eq!(state(&list, &first)["reported"]["settings"], json!({"heartbeat_interval": 5, "mode": "eco"}));
    let table = subnode_run(&url, &db, &["config", "show"]).await;
    assert_eq!(table.status.code(), Some(0));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("mode=turbo*") && text.contains("2 instance(s): 2 in sync"), "{text}");

    // No document names the interval any more: the configured one returns.
    subnode_run(&url, &db, &["config", "unset", "app/*", "heartbeat_interval"]).await;
    wait_in_sync(&url, &db, &[&first, &second]).await;
    assert_eq!(heartbeat_interval(&url, &db, &first).await, 1);
}
