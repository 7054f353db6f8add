//! amqtt, a Python MQTT 3.1.1 broker with WebSocket listeners (Debian's mosquitto is built
//! without them), started by the test on free loopback ports: a plain TCP listener for the
//! engine and a `ws://` listener for nodes, plus a `wss://` one with a CA made by the test when
//! asked. `tests/run` installs it with pip when it is missing; a missing broker fails the test
//! with what to install, never skips it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::tls::{make_pki, Pki};
use crate::{free_port, RestartableBroker, WAIT};

static UNIQUE: AtomicU32 = AtomicU32::new(0);

/// An amqtt process on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Amqtt {
    child: Option<Child>,
    dir: PathBuf,
    /// The plain MQTT listener (the engine's).
    port: u16,
    /// The `ws://` listener.
    ws_port: u16,
    /// The `wss://` listener and its PKI, if asked for.
    wss: Option<(u16, Pki)>,
}

impl Amqtt {
    /// A broker with a plain MQTT and a `ws://` listener, letting anyone in.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// A broker with a `wss://` listener too, whose certificate (for `localhost`) a CA made by
    /// the test signed: [`Amqtt::pki`] has its files.
    pub fn start_with_wss() -> Self {
        Self::launch(true)
    }

    fn launch(wss: bool) -> Self {
        let unique = UNIQUE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("subnodesync-amqtt-{}-{unique}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let wss = wss.then(|| (free_port(), make_pki(&dir)));
        let mut broker = Self { child: None, dir, port: free_port(), ws_port: free_port(), wss };
        broker.write_config();
        broker.spawn();
        broker
    }

    fn write_config(&self) {
        let mut config = format!(
            "listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{}\n  ws:\n    type: ws\n    bind: 127.0.0.1:{}\n",
            self.port, self.ws_port
        );
        if let Some((port, pki)) = &self.wss {
            config.push_str(&format!(
                "  wss:\n    type: ws\n    bind: 127.0.0.1:{port}\n    ssl: true\n    cafile: {}\n    certfile: {}\n    \
                 keyfile: {}\n",
                pki.ca.display(),
                pki.server_cert.display(),
                pki.server_key.display()
            ));
        }
        config.push_str("plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n");
        std::fs::write(self.dir.join("amqtt.yaml"), config).expect("write the amqtt configuration");
    }

    /// The amqtt script: `$AMQTT`, else `amqtt` on `PATH`.
    fn binary() -> PathBuf {
        if let Some(path) = std::env::var_os("AMQTT").map(PathBuf::from) {
            assert!(path.is_file(), "AMQTT={} is not a file", path.display());
            return path;
        }
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).map(|dir| dir.join("amqtt")).find(|candidate| candidate.is_file())
        });
        found.unwrap_or_else(|| {
            panic!(
                "the WebSocket tests need amqtt, a Python MQTT broker with WebSocket listeners: install it \
                 (`pip install amqtt`, as tests/run does) or set AMQTT=/path/to/amqtt"
            )
        })
    }

    /// Starts the process and waits until every listener accepts connections.
    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("amqtt.log")).expect("create the amqtt log");
        let child = Command::new(Self::binary())
            .arg("-c")
            .arg(self.dir.join("amqtt.yaml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start amqtt: {e}"));
        self.child = Some(child);
        let mut ports = vec![self.port, self.ws_port];
        ports.extend(self.wss.as_ref().map(|(port, _)| *port));
        // A Python interpreter starting up: slower than mosquitto.
        let deadline = Instant::now() + WAIT * 3;
        for port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                    panic!("amqtt exited with {status} before listening on {port}; its log:\n{}", self.log());
                }
                assert!(Instant::now() < deadline, "amqtt did not listen on {port}; its log:\n{}", self.log());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("amqtt.log")).unwrap_or_default()
    }

    /// The plain MQTT listener's loopback port (the engine's).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ws://127.0.0.1:<ws port>/mqtt`, as `SUBNODE_BROKER_URL` takes it.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/mqtt", self.ws_port)
    }

    /// `wss://localhost:<wss port>/mqtt`; fails the test without a `wss://` listener.
    pub fn wss_url(&self) -> String {
        let (port, _) = self.wss.as_ref().expect("started with_wss");
        format!("wss://localhost:{port}/mqtt")
    }

    /// The PEM files of the `wss://` listener's CA and certificates.
    pub fn pki(&self) -> &Pki {
        &self.wss.as_ref().expect("started with_wss").1
    }

    /// The broker's directory (configuration, log, certificates).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl RestartableBroker for Amqtt {
    fn port(&self) -> u16 {
        self.port
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Amqtt {
    fn drop(&mut self) {
        RestartableBroker::kill(self);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
