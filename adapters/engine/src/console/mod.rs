//! The operator console over one engine: the dashboard, the JSON API, server-sent events and
//! Prometheus metrics (`subnode serve`). The page is static files compiled in (HTML, a style sheet
//! and ES modules, no build step); everything it shows comes from the API it shares with other
//! programs.

mod api;
mod assets;
mod auth;
mod live;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use subnodesync_host::config::Secret;
use subnodesync_host::InvalidValue;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine::Engine;
use crate::error::Error;

/// `SUBNODE_HTTP_LISTEN`: where `subnode serve` listens.
pub const HTTP_LISTEN: &str = "SUBNODE_HTTP_LISTEN";
/// `SUBNODE_HTTP_TOKEN`: the token the console asks for; required off loopback.
pub const HTTP_TOKEN: &str = "SUBNODE_HTTP_TOKEN";
/// Where the console listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Where the console listens and what it asks for.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The token for the API, the metrics and the page's login form; required unless `listen` is
    /// a loopback address.
    pub token: Option<Secret>,
}

impl ConsoleConfig {
    /// From `SUBNODE_HTTP_LISTEN` and `SUBNODE_HTTP_TOKEN` as `lookup` gives them.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let listen = get(HTTP_LISTEN).unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = parse_listen(&listen)
            .map_err(|expected| Error::Setting(InvalidValue { name: HTTP_LISTEN, value: listen.clone(), expected }))?;
        Ok(Self { listen, token: get(HTTP_TOKEN).map(Secret::new) })
    }

    /// Refuses to serve a network without a token, and a token short enough to guess.
    fn check(&self) -> Result<(), Error> {
        if self.token.as_ref().is_some_and(|t| t.expose().chars().count() < auth::MIN_TOKEN_LEN) {
            return Err(Error::Setting(InvalidValue {
                name: HTTP_TOKEN,
                value: String::new(),
                expected: "a token of at least 16 characters",
            }));
        }
        if self.token.is_none() && !self.listen.ip().to_canonical().is_loopback() {
            return Err(Error::Setting(InvalidValue {
                name: HTTP_TOKEN,
                value: String::new(),
                expected: "a token, since the console listens on an address other than loopback",
            }));
        }
        Ok(())
    }
}

/// `host:port` as an address; what `--listen` and `SUBNODE_HTTP_LISTEN` take.
pub fn parse_listen(text: &str) -> Result<SocketAddr, &'static str> {
    text.trim().parse().map_err(|_| "an address and port such as 127.0.0.1:8080 or [::1]:8080")
}

/// What every handler shares.
type Shared = Arc<State>;

/// The console's state over its engine.
struct State {
    engine: Arc<Engine>,
    auth: auth::Auth,
    live: live::Live,
    /// Turns true when the console stops: open event streams end then.
    stopping: watch::Receiver<bool>,
}

/// A running console; dropping it stops it: it stops listening, its event streams end, and the
/// requests under way finish.
#[derive(Debug)]
pub struct Console {
    addr: SocketAddr,
    sampler: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl Console {
    /// Serves the console for `engine` on `config.listen` until dropped.
    pub async fn start(engine: Arc<Engine>, config: ConsoleConfig) -> Result<Self, Error> {
        config.check()?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Http(format!("cannot listen on {}: {e}", config.listen)))?;
        let addr = listener.local_addr().map_err(|e| Error::Http(e.to_string()))?;
        let (stop, stopping) = watch::channel(false);
        let shared = Arc::new(State {
            engine,
            auth: auth::Auth::new(config.token),
            live: live::Live::new(),
            stopping: stopping.clone(),
        });
        let sampler = tokio::spawn(live::run(shared.clone()));
        let app = router(shared);
        let mut stopped = stopping;
        tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "the console stopped");
            }
        });
        Ok(Self { addr, sampler, stop })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The dashboard's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.sampler.abort();
        self.stop.send_replace(true);
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/:name", get(assets::asset))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/metrics", get(metrics::metrics))
        .route("/api/engine", get(api::engine))
        .route("/api/nodes", get(api::nodes))
        .route("/api/nodes/:instance_id", get(api::node))
        .route("/api/commands", get(api::commands).post(api::send))
        .route("/api/commands/:request_id", get(api::command))
        .route("/api/events", get(live::events))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), auth::guard))
        .layer(axum::middleware::from_fn(assets::security_headers))
        // A command's parameters are at most what the engine sends (64 KiB), with room for JSON.
        .layer(axum::extract::DefaultBodyLimit::max(2 * crate::MAX_PAYLOAD))
        .with_state(shared)
}

/// `{"error": message}` with `status`.
fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// 128 bits from the operating system's random source, as hex: a session id nobody can guess.
fn random_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_required_unless_the_console_listens_on_loopback() {
        let config = |listen: &str, token: Option<&str>| ConsoleConfig {
            listen: parse_listen(listen).unwrap(),
            token: token.map(Secret::new),
        };
        for loopback in ["127.0.0.1:8080", "[::1]:0", "[::ffff:127.0.0.1]:8080"] {
            assert!(config(loopback, None).check().is_ok(), "{loopback}");
        }
        for open in ["0.0.0.0:8080", "[::]:0", "10.1.2.3:80", "[::ffff:10.1.2.3]:80"] {
            assert!(matches!(config(open, None).check(), Err(Error::Setting(v)) if v.name == HTTP_TOKEN), "{open}");
            assert!(config(open, Some("sixteen-chars-ok")).check().is_ok());
            assert!(matches!(config(open, Some("fifteen-chars!!")).check(), Err(Error::Setting(_))));
        }
        let env = |k: &str| (k == HTTP_LISTEN).then(|| "nowhere".to_owned());
        assert!(matches!(ConsoleConfig::from_lookup(&env), Err(Error::Setting(v)) if v.name == HTTP_LISTEN));
        assert_eq!(ConsoleConfig::from_lookup(&|_| None).unwrap().listen, parse_listen(DEFAULT_LISTEN).unwrap());
    }
}
