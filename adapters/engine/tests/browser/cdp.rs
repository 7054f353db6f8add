//! Just enough of Chromium's DevTools protocol for tests/browser.rs: launches headless Chromium
//! on a scratch profile, opens one page, and sends it commands over one WebSocket (the browser's
//! own endpoint, with the page's session id on each command: the protocol's "flat" mode).

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// How long Chromium may take to start, and one protocol command to answer.
const PATIENCE: Duration = Duration::from_secs(30);

/// A headless Chromium with one page open; killed, and its profile removed, on drop.
pub(crate) struct Browser {
    child: Child,
    profile: PathBuf,
    socket: WebSocket<TcpStream>,
    /// The page's session: every command below goes to the page, not to the browser.
    session: String,
    next_id: u64,
}

/// `$CHROMIUM`, else the first of Debian's and other distributions' names on `PATH`; fails the
/// test, saying how to install it, when there is none.
fn chromium() -> PathBuf {
    let found = match std::env::var_os("CHROMIUM") {
        Some(named) => Some(PathBuf::from(named)).filter(|path| path.is_file()),
        None => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
                .find(|candidate| candidate.is_file())
        }
    };
    found.unwrap_or_else(|| {
        panic!(
            "this test drives a headless Chromium, and none was found: install Debian's package \
             (sudo apt-get install chromium; tests/run does it when run as root) or set CHROMIUM to its path"
        )
    })
}

impl Browser {
    /// Starts Chromium with its profile in `profile` (made here) and opens an empty page.
    pub(crate) fn launch(profile: &Path) -> Self {
        std::fs::create_dir_all(profile).expect("create the browser profile dir");
        let binary = chromium();
        let mut child = Command::new(&binary)
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"])
            .args(["--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        // Port 0: Chromium picks a free port and says which on stderr. The rest of stderr is
        // drained, or Chromium would block on a full pipe.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("{} did not open its DevTools endpoint within {PATIENCE:?}", binary.display())
        });
        let address = url.strip_prefix("ws://").and_then(|rest| rest.split('/').next()).expect("a ws:// URL");
        let stream = TcpStream::connect(address).expect("connect to DevTools");
        // A command that never answers fails the test instead of hanging it.
        stream.set_read_timeout(Some(PATIENCE)).expect("set a read timeout");
        let (socket, _) = tungstenite::client(url.as_str(), stream).expect("DevTools WebSocket handshake");
        let mut browser = Self { child, profile: profile.to_owned(), socket, session: String::new(), next_id: 0 };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser.call("Target.attachToTarget", json!({"targetId": target_id, "flatten": true}));
        browser.session = attached["sessionId"].as_str().expect("a session id").to_owned();
        browser
    }

    /// The browser's process id (its renderers are its descendants): for `benches/console.rs`,
    /// which measures its CPU.
    #[allow(dead_code)]
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `method` to the page and returns its result, skipping the events that come between.
    pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            command["sessionId"] = Value::from(self.session.as_str());
        }
        self.socket.send(Message::text(command.to_string())).unwrap_or_else(|e| panic!("send {method}: {e}"));
        loop {
            let message = self.socket.read().unwrap_or_else(|e| panic!("no answer to {method}: {e}"));
            let Ok(text) = message.to_text() else { continue };
            let Ok(answer) = serde_json::from_str::<Value>(text) else { continue };
            if answer["id"] != id {
                continue;
            }
            if let Some(error) = answer.get("error") {
                panic!("{method} failed: {error}");
            }
            return answer["result"].clone();
        }
    }

    /// Loads `url` in the page.
    pub(crate) fn navigate(&mut self, url: &str) {
        let answer = self.call("Page.navigate", json!({"url": url}));
        assert!(answer.get("errorText").is_none(), "cannot load {url}: {answer}");
    }

    /// The value of `expression` in the page (a promise is awaited), as JSON.
    pub(crate) fn eval(&mut self, expression: &str) -> Value {
        let answer = self
            .call("Runtime.evaluate", json!({"expression": expression, "awaitPromise": true, "returnByValue": true}));
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("{expression}\nthrew: {}", exception["exception"]["description"].as_str().unwrap_or("?"));
        }
        answer["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page, polling; fails after `within`, saying `what`
    /// and what the page showed.
    pub(crate) fn wait_for(&mut self, what: &str, expression: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self.eval(expression) != Value::Bool(true) {
            if Instant::now() > deadline {
                let text = self.eval("document.body.innerText");
                panic!("no {what} within {within:?}; the page showed:\n{}", text.as_str().unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The page as it is, a PNG.
    pub(crate) fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64_decode(shot["data"].as_str().expect("screenshot data"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Standard base64 (the protocol's binary data), padding and all.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {:?}", c as char),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let bits = chunk.iter().enumerate().fold(0u32, |acc, (i, &d)| acc | (u32::from(d) << (18 - 6 * i)));
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_with_and_without_padding() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("aGV5"), b"hey");
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
}
