//! The dashboard in a real browser: headless Chromium (Debian's `chromium`), driven over the
//! DevTools protocol, opens `subnode serve`'s page against mosquitto and real `subnode node`
//! processes and checks what a person would see: a node appearing online, turning lost after a
//! kill -9 without a reload, a ping sent from the form answered with pong, and a hostile version
//! string shown as text, never run as HTML.
//!
//! `SUBNODE_SCREENSHOT=$PWD/docs/console.png cargo test -p subnodesync-engine --test browser`
//! (from the repository's root) also saves the dashboard's screenshot, the README's, there.

// Under tests/browser/, so cargo does not take it for a test of its own.
#[path = "browser/cdp.rs"]
mod cdp;

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use cdp::Browser;
use serde_json::{json, Value};
use subnodesync_testkit::{Broker, WAIT};

const SUBNODE: &str = env!("CARGO_BIN_EXE_subnode");

/// What a node could put in its version to run script in a page that inserted it as HTML.
const HOSTILE: &str = r#"<img src=x onerror="window.__pwned=1">"#;

/// A scratch directory for the engine's database, the logs and the browser's profile.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("subnode-browser-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `subnode` subprocess, killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `subnode` with a clean environment pointed at `broker`, heartbeats every second, its stderr
/// into `log` in the scratch dir.
fn subnode(broker: &str, scratch: &Scratch, log: &str) -> Command {
    let mut cmd = Command::new(SUBNODE);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SUBNODE_BROKER_URL", broker)
        .env("SUBNODE_DB", scratch.0.join("engine.db"))
        .env("SUBNODE_HEARTBEAT_INTERVAL", "1s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(scratch.0.join(log)).expect("create a log file"));
    cmd
}

/// `subnode serve` on a free loopback port, and the dashboard's URL it prints first.
fn serve(broker: &str, scratch: &Scratch) -> (Process, String) {
    let mut child = subnode(broker, scratch, "serve.log")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn subnode serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line.trim().to_owned());
    });
    let url = rx.recv_timeout(WAIT).ok().filter(|url| url.starts_with("http://"));
    let process = Process(child);
    let Some(url) = url else {
        let log = std::fs::read_to_string(scratch.0.join("serve.log")).unwrap_or_default();
        panic!("subnode serve printed no URL within {WAIT:?}; its log:\n{log}");
    };
    (process, url)
}

/// A `subnode node NAME --hostname HOST` reporting `version`, and its instance id.
fn node(broker: &str, scratch: &Scratch, name: &str, host: &str, version: &str) -> (Process, String) {
    let child = subnode(broker, scratch, &format!("node-{host}.log"))
        .env("SUBNODE_VERSION", version)
        .args(["node", name, "--hostname", host])
        .spawn()
        .expect("spawn subnode node");
    let id = format!("{name}-{host}-{}", child.id());
    (Process(child), id)
}

/// `text` as a JavaScript string literal.
fn js(text: &str) -> String {
    Value::from(text).to_string()
}

/// An expression true once the fleet table shows `id` with `status`.
fn row_status(id: &str, status: &str) -> String {
    format!(
        "document.querySelector(`#fleet-body tr[data-id=\"${{CSS.escape({})}}\"] .badge`)?.textContent === {}",
        js(id),
        js(status)
    )
}

/// Retains a register message for `app-evil-1` whose version is [`HOSTILE`], as any client of
/// the broker could.
fn publish_hostile_register(port: u16) {
    let register = json!({
        "timestamp": "2024-01-01T12:00:00Z", "node_name": "app", "instance_id": "app-evil-1", "version": HOSTILE,
        "pid": 1, "start_time": "2024-01-01T12:00:00Z", "capabilities": ["mqtt_control", "heartbeat"],
        "metadata": {"hostname": "evil"},
        "node_version": {
            "git_version": HOSTILE, "git_commit": "c", "build_date": "d", "go_version": "g", "platform": "p"
        },
    });
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the MQTT client");
    runtime.block_on(async {
        let client = subnodesync_testkit::Engine::connect(port, &[]).await;
        client.publish_retained("subnodesync/app/app-evil-1/register", register.to_string()).await;
        // publish only queues the message: a second client handed it (retained, or live if it
        // subscribed first) proves the broker has it before this runtime, and the client, go.
        let mut reader = subnodesync_testkit::Engine::connect(port, &["subnodesync/app/app-evil-1/register"]).await;
        reader.expect("the hostile register at the broker", |_| true).await;
    });
}

#[test]
fn the_dashboard_follows_the_fleet_live_sends_a_ping_and_shows_wire_text_as_text() {
    let started = Instant::now();
    let scratch = Scratch::new();
    // First, so a missing Chromium fails the test before anything else starts.
    let mut browser = Browser::launch(&scratch.0.join("chromium"));
    let broker = Broker::start();
    let url = broker.url();
    let (_serve, console) = serve(&url, &scratch);
    let (mut first, first_id) = node(&url, &scratch, "app", "h1", "1.0.0");

    browser.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1366, "height": 768, "deviceScaleFactor": 1, "mobile": false}),
    );
    browser.navigate(&console);
    // The table's head is drawn by app.js: the script loaded and ran under the page's CSP.
    browser.wait_for("table drawn by the script", "document.querySelectorAll('#fleet-head th').length === 10", WAIT);
    browser.wait_for("first node online in the table", &row_status(&first_id, "online"), WAIT);
    browser.wait_for(
        "the live stream connected",
        "document.querySelector('#stream-state').textContent === 'Live'",
        WAIT,
    );
    assert_eq!(browser.eval("document.querySelector('#broker-state').textContent"), "Broker connected");

    // Anything the page learns from now on comes over its event stream: a reload would lose this.
    browser.eval("window.__sameDocument = true");
    first.0.kill().expect("kill -9 the first node");
    let _ = first.0.wait();
    browser.wait_for("first node lost in the table", &row_status(&first_id, "lost"), WAIT);
    assert_eq!(browser.eval("window.__sameDocument"), true, "the page was reloaded");
    assert_eq!(browser.eval("document.querySelector('#count-lost').textContent"), "1");

    // A few more nodes, as a small fleet looks (and as the screenshot shows it).
    let mut nodes = Vec::new();
    for (name, host, version) in
        [("app", "h2", "1.1.0"), ("app", "h3", "1.1.0"), ("worker", "w1", "2.0.3"), ("worker", "w2", "2.0.4")]
    {
        nodes.push(node(&url, &scratch, name, host, version));
    }
    for (_, id) in &nodes {
        browser.wait_for(&format!("{id} online in the table"), &row_status(id, "online"), WAIT);
    }
    // The filters are built from the data: the lost one alone, then everyone again.
    browser.eval(
        "(() => { const status = document.querySelector('#f-status'); \
         status.value = 'lost'; status.dispatchEvent(new Event('change')); })()",
    );
    browser.wait_for("the status filter applied", "document.querySelectorAll('#fleet-body tr').length === 1", WAIT);
    assert_eq!(browser.eval("document.querySelector('#fleet-body tr').dataset.id"), first_id.as_str());
    browser.eval("document.querySelector('#f-clear').click()");
    browser.wait_for("the filters cleared", "document.querySelectorAll('#fleet-body tr').length === 5", WAIT);
    assert_eq!(
        browser.eval("[...document.querySelectorAll('#f-version option')].map(o => o.value).join()"),
        ",1.0.0,1.1.0,2.0.3,2.0.4"
    );

    // Ping the second node from the form, as a person would.
    let second = &nodes[0].1;
    browser.eval(&format!(
        "(() => {{
            document.querySelector('#send-form input[value=instance]').click();
            const fill = (id, value) => {{
                const field = document.getElementById(id);
                field.value = value;
                field.dispatchEvent(new Event('input', {{bubbles: true}}));
            }};
            fill('s-instance', {});
            fill('s-command', 'ping');
            fill('s-params', '');
            document.querySelector('#s-submit').click();
        }})()",
        js(second)
    ));
    browser.wait_for(
        "the pong from the second node under the form",
        &format!(
            "[...document.querySelectorAll('#send-output .result')].some(r => \
             r.querySelector('a').textContent === {} && r.querySelector('.message').textContent === 'pong')",
            js(second)
        ),
        WAIT,
    );
    browser.wait_for(
        "the outcome of the ping",
        "document.querySelector('#send-output .outcome .verdict')?.textContent === 'succeeded'",
        WAIT,
    );

    // Desired state: the workers apply theirs; the lost first node cannot, and its row says so
    // without a heartbeat to carry the news.
    for target in ["worker/*", first_id.as_str()] {
        let status = subnode(&url, &scratch, "config.log").args(["config", "set", target, "mode=eco"]).status();
        assert!(status.expect("run subnode config set").success(), "config set {target}");
    }
    let config_cell =
        |id: &str| format!("document.querySelector(`tr[data-id=\"${{CSS.escape({})}}\"] .c-config`)", js(id));
    for (_, id) in &nodes[2..] {
        browser.wait_for(&format!("{id} in sync"), &format!("{}?.textContent === 'in sync'", config_cell(id)), WAIT);
    }
    browser.wait_for(
        "the lost node drifting",
        &format!("{0}?.textContent === 'drift' && {0}.classList.contains('drift')", config_cell(&first_id)),
        WAIT,
    );
    assert_eq!(browser.eval(&format!("{}.textContent", config_cell(&nodes[0].1))), "–");

    // The dashboard as the README shows it, with the pong on screen.
    let keep = std::env::var_os("SUBNODE_SCREENSHOT");
    if keep.is_some() {
        // A fleet up for a few seconds reads better in the README than one started this instant.
        browser.wait_for(
            "five seconds of uptime",
            "[...document.querySelectorAll('#fleet-body tr')].every(row => \
             row.querySelector('.badge').textContent !== 'online' || \
             parseInt(row.querySelector('.c-uptime').textContent) >= 5)",
            WAIT,
        );
    }
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000, "not a screenshot: {} bytes", png.len());
    if let Some(path) = keep {
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    // Text from the wire stays text: in the table, in the events, and on the instance's page.
    publish_hostile_register(broker.port());
    browser.wait_for(
        "the hostile instance in the table",
        "!!document.querySelector('#fleet-body tr[data-id=\"app-evil-1\"]')",
        WAIT,
    );
    assert_eq!(browser.eval("document.querySelector('tr[data-id=\"app-evil-1\"] .c-version').textContent"), HOSTILE);
    browser.wait_for(
        "the hostile registration in the events",
        &format!("document.querySelector('#events').textContent.includes({})", js(HOSTILE)),
        WAIT,
    );
    browser.eval("location.hash = '#/instance/app-evil-1'");
    browser.wait_for(
        "the hostile build version on the instance's page",
        &format!("[...document.querySelectorAll('#instance-view dd')].some(d => d.textContent === {})", js(HOSTILE)),
        WAIT,
    );
    assert_eq!(browser.eval("document.querySelectorAll('img').length"), 0, "the version became an element");
    assert_eq!(browser.eval("window.__sameDocument"), true, "the page was reloaded");
    eprintln!("browser test: {:.1} s", started.elapsed().as_secs_f64());
}
