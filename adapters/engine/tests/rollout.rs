//! `subnode send --rollout` and `subnode cancel` as a user runs them: subprocesses against a
//! mosquitto the test starts, with `subnode node` processes as the fleet (some started with
//! `--fail echo`, one frozen with SIGSTOP so it cannot answer).

mod subnode;

use std::time::Instant;

use serde_json::{json, Value};
use subnode::*;
use subnodesync_testkit::{free_port, Broker, WAIT};

/// Ten `subnode node fleet` processes on hosts h01 to h10, those on a host in `failing` started
/// with `--fail echo`, once every one is online; their instance ids come in host order, which
/// is the rollout's (instance id order).
fn fleet(url: &str, db: &str, failing: &[&str]) -> Vec<(Running, String)> {
    let fleet: Vec<(Running, String)> = (1..=10)
        .map(|n| {
            let host = format!("h{n:02}");
            let mut cmd = subnode(url, "/nonexistent/unused.db");
            cmd.args(["node", "fleet", "--hostname", &host]);
            if failing.contains(&host.as_str()) {
                cmd.args(["--fail", "echo"]);
            }
            let node = Running::start(cmd);
            let id = format!("fleet-{host}-{}", node.child.id());
            (node, id)
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let listed = json(&run(url, db, &["nodes", "--json", "--where", "status=online"]));
        let online = listed.as_array().expect("a list").len();
        if online == fleet.len() {
            return fleet;
        }
        assert!(Instant::now() < deadline, "{online} of {} online within {WAIT:?}: {listed}", fleet.len());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Runs `subnode args...`, returning its exit code and its stdout as JSON.
fn run_json(url: &str, db: &str, args: &[&str]) -> (Option<i32>, Value) {
    let out = run(url, db, args);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), json(&out))
}

/// The strings of a JSON array.
fn strings(list: &Value) -> Vec<&str> {
    list.as_array().expect("a list").iter().map(|v| v.as_str().expect("a string")).collect()
}

/// The history's commands of rollout `id`, first wave first.
fn waves_in_history(url: &str, db: &str, id: &str) -> Vec<Value> {
    let history = json(&run(url, db, &["history", "--json"]));
    let mut waves: Vec<Value> =
        history.as_array().expect("a list").iter().filter(|c| c["rollout"]["id"] == id).cloned().collect();
    waves.reverse();
    waves
}

#[test]
fn a_rollout_that_succeeds_goes_in_waves_with_the_pause_between_them() {
    let broker = Broker::start();
    let url = broker.url();
    let scratch = Scratch::new("rollout-waves");
    let db = scratch.db("engine.db");
    let fleet = fleet(&url, &db, &[]);
    let ids: Vec<&str> = fleet.iter().map(|(_, id)| id.as_str()).collect();

    let (code, outcome) = run_json(
        &url,
        &db,
        &["send", "fleet/*", "echo", "-p", "text=hi", "--rollout", "40%", "--pause", "1s", "--json"],
    );
    assert_eq!(code, Some(0), "{outcome:#}");
    let counts = ["sent", "succeeded", "failed", "timed_out", "never_sent"].map(|k| outcome[k].as_u64());
    assert_eq!(counts, [Some(10), Some(10), Some(0), Some(0), Some(0)], "{outcome:#}");
    assert_eq!((outcome["stopped"].as_bool(), outcome["success"].as_bool()), (Some(false), Some(true)));
    assert_eq!(strings(&outcome["instances"]), ids);
    // 40% of 10: waves of 4, 4 and 2, in instance id order, each with a request id of its own.
    let rollout_id = outcome["rollout_id"].as_str().expect("a rollout id");
    let waves = outcome["waves"].as_array().expect("waves");
    assert_eq!(
        waves.iter().map(|w| w["expected"].as_array().map(Vec::len)).collect::<Vec<_>>(),
        [Some(4), Some(4), Some(2)]
    );
    let sent_to: Vec<&str> = waves.iter().flat_map(|w| strings(&w["expected"])).collect();
    assert_eq!(sent_to, ids);
    for (n, wave) in waves.iter().enumerate() {
        assert_eq!(wave["wave"], n + 1);
        assert_eq!(wave["request_id"], format!("{rollout_id}-w{}", n + 1));
        assert!(wave["results"].as_array().expect("results").iter().all(|r| r["message"] == "echoed"));
    }

    // The history has one command per wave, each naming the rollout and its wave, and each wave
    // went out at least the pause after the last answer to the one before.
    let history = waves_in_history(&url, &db, rollout_id);
    let numbers: Vec<Option<u64>> = history.iter().map(|c| c["rollout"]["wave"].as_u64()).collect();
    assert_eq!(numbers, [Some(1), Some(2), Some(3)]);
    for (recorded, sent) in history.iter().zip(waves) {
        assert_eq!((&recorded["request_id"], &recorded["expected"]), (&sent["request_id"], &sent["expected"]));
        assert_eq!(recorded["target"], "fleet/*");
        assert_eq!(recorded["results"].as_array().map(Vec::len), sent["expected"].as_array().map(Vec::len));
    }
    for pair in history.windows(2) {
        let last_answer = pair[0]["results"].as_array().unwrap().iter().filter_map(|r| r["received_ms"].as_i64()).max();
        let next_sent = pair[1]["sent_ms"].as_i64().expect("sent_ms");
        assert!(next_sent >= last_answer.expect("answers") + 1000, "no 1 s pause between waves: {pair:#?}");
    }
    let text = String::from_utf8(run(&url, &db, &["history"]).stdout).expect("UTF-8");
    assert!(
        text.contains(&format!(
            "{rollout_id}-w3 echo -> fleet/* (1 attempt(s), 2 result(s), rollout {rollout_id} wave 3)"
        )),
        "{text}"
    );

    // A rollout to nobody sends nothing and says so.
    let out = run(&url, &db, &["send", "nobody/*", "echo", "--rollout", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the target selects no instance"));
}

#[test]
fn a_rollout_stops_before_the_next_wave_once_failures_exceed_the_threshold() {
    let broker = Broker::start();
    let url = broker.url();
    let scratch = Scratch::new("rollout-stops");
    let db = scratch.db("engine.db");
    // h02 and h04 fail echo; h05 is frozen, so it times out: a failure too.
    let fleet = fleet(&url, &db, &["h02", "h04"]);
    fleet[4].0.signal("-STOP");
    let ids: Vec<&str> = fleet.iter().map(|(_, id)| id.as_str()).collect();

    // Wave 1 (h01-h03): one failure, not more than 1, so wave 2 (h04-h06) goes: three failures
    // so far, and the rollout stops before wave 3.
    let rollout =
        ["send", "fleet/*", "echo", "--rollout", "3", "--max-failures", "1", "--timeout", "3s", "--retries", "0"];
    let (code, outcome) = run_json(&url, &db, &[&rollout[..], &["--json"]].concat());
    assert_eq!(code, Some(4), "{outcome:#}");
    let counts = ["sent", "succeeded", "failed", "timed_out", "never_sent"].map(|k| outcome[k].as_u64());
    assert_eq!(counts, [Some(6), Some(3), Some(3), Some(1), Some(4)], "{outcome:#}");
    assert_eq!(strings(&outcome["never_sent_instances"]), &ids[6..]);
    assert_eq!((outcome["stopped"].as_bool(), outcome["max_failures"].as_str()), (Some(true), Some("1")));
    let waves = outcome["waves"].as_array().expect("waves");
    assert_eq!(waves.len(), 2);
    assert_eq!(waves[1]["timed_out"], json!([ids[4]]));
    let failed: Vec<&str> = waves
        .iter()
        .flat_map(|w| w["results"].as_array().unwrap())
        .filter(|r| r["success"] == false)
        .map(|r| {
            assert_eq!(r["message"], "echo failed: this instance runs with --fail echo");
            r["instance_id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(failed, [ids[1], ids[3]]);

    // The history has the two waves sent and nothing of the third.
    let rollout_id = outcome["rollout_id"].as_str().expect("a rollout id");
    let history = waves_in_history(&url, &db, rollout_id);
    assert_eq!(history.iter().map(|c| c["rollout"]["wave"].as_u64()).collect::<Vec<_>>(), [Some(1), Some(2)]);
    assert_eq!(strings(&history[1]["expected"]), &ids[3..6]);
    let answered: Vec<&str> =
        history[1]["results"].as_array().unwrap().iter().map(|r| r["instance_id"].as_str().unwrap()).collect();
    assert_eq!(answered.len(), 2, "h05 never answered: {answered:?}");
    assert!(!answered.contains(&ids[4]));

    // The same threshold as percentages (30% of 10 a wave, 10% of 10 failures), read by a person.
    let out = run(&url, &db, &[&rollout[..3], &["--rollout", "30%", "--max-failures", "10%"], &rollout[7..]].concat());
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("wave 2 of 4 (request "), "{text}");
    assert!(!text.contains("wave 3 of 4"), "{text}");
    assert!(text.contains("stopped: 3 failed or timed out, more than --max-failures 10%"), "{text}");
    assert!(text.contains("6 sent in 2 wave(s), 3 succeeded, 3 failed (1 timed out), 4 never sent"), "{text}");
}

/// The rollout flags are checked before anything connects: a usage error (exit 2) that says
/// what is wrong.
#[test]
fn bad_rollout_flags_are_usage_errors() {
    let scratch = Scratch::new("rollout-flags");
    let db = scratch.db("engine.db");
    // No broker listens there: nothing may get as far as connecting.
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    for (flags, says) in [
        (&["--pause", "1s"][..], "--rollout <N|N%>"),
        (&["--max-failures", "1"], "--rollout <N|N%>"),
        (&["--rollout", "0"], "a wave takes at least one instance"),
        (&["--rollout", "0%"], "0%: a percentage must be 1% to 100%"),
        (&["--rollout", "101%"], "101%: a percentage must be 1% to 100%"),
        (&["--rollout=-3"], "\"-3\": expected N or N%"),
        (&["--rollout", "3", "--max-failures", "ten"], "\"ten\": expected N or N%"),
        (&["--rollout", "3", "--max-failures", "150%"], "150%: a percentage must be 1% to 100%"),
        (&["--rollout", "3", "--pause", "25h"], "a duration from 0s to 24h"),
    ] {
        let args = [&["send", "fleet/*", "echo"][..], flags].concat();
        let out = run(&url, &db, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// `subnode cancel` sends the built-in `cancel` with the request id as its parameter and
/// reports like `send`: a node with nothing of that id running fails it (exit 1).
#[test]
fn cancel_sends_the_built_in_with_the_request_id() {
    let broker = Broker::start();
    let scratch = Scratch::new("cancel-nothing");
    let db = scratch.db("engine.db");
    let (_node, id) = Running::node(&broker.url(), "app", "h1");
    wait_online(&broker.url(), &db, &id);
    let (code, outcome) = run_json(&broker.url(), &db, &["cancel", &id, "nothing-running", "--json"]);
    assert_eq!(code, Some(1), "{outcome:#}");
    let result = &outcome["results"][0];
    assert_eq!((result["command"].as_str(), outcome["success"].as_bool()), (Some("cancel"), Some(false)));
    assert_eq!(result["message"], "no running command has request_id `nothing-running`");
    let history = json(&run(&broker.url(), &db, &["history", "--json"]));
    assert_eq!((history[0]["command"].as_str(), history[0]["target"].as_str()), (Some("cancel"), Some(id.as_str())));
    assert_eq!(history[0]["parameters"]["request_id"], "nothing-running");
}

/// A long `sleep` is cancelled from another `subnode`: it ends with a failed result naming the
/// cancel request, and `cancel` answers `cancelled` (PROTOCOL.md §7.1).
#[test]
fn cancel_ends_a_running_command_with_a_failed_result() {
    let broker = Broker::start();
    let url = broker.url();
    let scratch = Scratch::new("cancel-sleep");
    let (sending_db, db) = (scratch.db("sending.db"), scratch.db("engine.db"));
    let (_node, id) = Running::node(&url, "app", "h1");
    wait_online(&url, &db, &id);
    // Made before two processes open it at once (its reader below and the sending engine).
    assert!(run(&url, &sending_db, &["history"]).status.success());
    let mut send = subnode(&url, &sending_db);
    send.args([
        "send",
        &id,
        "sleep",
        "-p",
        "ms=60000",
        "--timeout",
        "30s",
        "--retries",
        "0",
        "--request-id",
        "long-1",
        "--json",
    ]);
    let mut sleeping = Running::start(send);

    // Under way once the node said so (its progress update, in the sending engine's history).
    let deadline = Instant::now() + WAIT;
    while !json(&run(&url, &sending_db, &["history", "--json"]))[0]["results"]
        .as_array()
        .is_some_and(|rs| rs.iter().any(|r| r["message"] == "sleeping"))
    {
        assert!(Instant::now() < deadline, "the sleep did not start within {WAIT:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (code, cancelled) = run_json(&url, &db, &["cancel", &id, "long-1", "--json"]);
    assert_eq!(code, Some(0), "{cancelled:#}");
    let result = &cancelled["results"][0];
    assert_eq!((result["message"].as_str(), &result["data"]), (Some("cancelled"), &json!({"request_id": "long-1"})));

    let ended = sleeping.child.wait().expect("wait for send");
    assert_eq!(ended.code(), Some(1));
    let outcome = sleeping.expect("the sleep's outcome", |v| v["request_id"] == "long-1");
    let message = format!("cancelled by request `{}`", cancelled["request_id"].as_str().expect("a request id"));
    assert_eq!(
        (outcome["results"][0]["message"].as_str(), outcome["results"][0]["success"].as_bool()),
        (Some(message.as_str()), Some(false))
    );

    // Nothing of that id runs any more.
    let (code, again) = run_json(&url, &db, &["cancel", &id, "long-1", "--json"]);
    assert_eq!(code, Some(1), "{again:#}");
    assert_eq!(again["results"][0]["message"], "no running command has request_id `long-1`");
}
