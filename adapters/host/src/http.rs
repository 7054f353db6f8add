//! Optional HTTP registration: the register message is POSTed to `SUBNODE_HTTP_REGISTER_URL`
//! by a task of its own, retried with the core's backoff, so MQTT never waits for it.
//!
//! The client is the least HTTP/1.1 that does the job (one request per connection,
//! `Connection: close`, only the status line is read), so the adapter needs no HTTP stack.

use std::io;
use std::time::Duration;

use futures_util::{AsyncReadExt, AsyncWriteExt};

use crate::config::HttpUrl;
use crate::runtime::{self, Runtime};
use crate::time::RetryDelays;

/// The longest status line read from the server.
const STATUS_LINE_MAX: usize = 1024;

/// The registration task's job: one body, one URL.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) url: HttpUrl,
    /// The register message, byte for byte as the core publishes it (`Node::register_json`).
    pub(crate) body: Vec<u8>,
    /// Each attempt (connect, request, status line) is bounded by this.
    pub(crate) attempt_timeout: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) seed: u64,
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Registered(u16),
    /// A 4xx other than 408 and 429: the request itself is wrong, so repeating it is useless.
    Refused(u16),
    Retry(String),
}

impl Registration {
    /// Posts until the server takes it (2xx) or refuses it for good (4xx); runs until then or
    /// until the node stops and aborts it.
    pub(crate) async fn run<R: Runtime>(self) {
        // Its own stream of jitter, apart from the core's.
        let mut delays = RetryDelays::new(self.reconnect_min, self.reconnect_max, self.seed ^ 0x6874_7470_7265_6769);
        for attempt in 1u32.. {
            let outcome = match runtime::timeout::<R, _>(self.attempt_timeout, post::<R>(&self.url, &self.body)).await {
                Some(Ok(status)) => classify(status),
                Some(Err(e)) => Outcome::Retry(e.to_string()),
                None => Outcome::Retry(format!("no answer within {:?}", self.attempt_timeout)),
            };
            match outcome {
                Outcome::Registered(status) => {
                    tracing::info!(url = %self.url, status, attempt, "registered over HTTP");
                    return;
                }
                Outcome::Refused(status) => {
                    tracing::error!(url = %self.url, status, "HTTP registration refused; not retried");
                    return;
                }
                Outcome::Retry(why) => {
                    let delay = delays.next_delay();
                    tracing::warn!(url = %self.url, error = %why, attempt, retry_in = ?delay, "HTTP registration failed");
                    if let Some(at) = R::now().checked_add(delay) {
                        R::sleep_until(at).await;
                    }
                }
            }
        }
    }
}

fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Registered(status),
        408 | 429 => Outcome::Retry(format!("HTTP status {status}")),
        400..=499 => Outcome::Refused(status),
        _ => Outcome::Retry(format!("HTTP status {status}")),
    }
}

/// One `POST` of `body` as JSON; returns the response's status code.
async fn post<R: Runtime>(url: &HttpUrl, body: &[u8]) -> io::Result<u16> {
    let mut stream = R::connect(&url.host, url.port).await?;
    let host = if url.host.contains(':') { format!("[{}]", url.host) } else { url.host.clone() };
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: subnodesync/{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        url.path,
        url.port,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await?;
    let mut line = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while !line.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || line.len() >= STATUS_LINE_MAX {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line in the response"));
        }
        line.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    parse_status(&line).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP status line"))
}

/// The status code of `HTTP/1.x NNN reason\r\n...`.
fn parse_status(response: &[u8]) -> Option<u16> {
    let rest = response.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_give_their_code_and_anything_else_nothing() {
        assert_eq!(parse_status(b"HTTP/1.1 201 Created\r\n"), Some(201));
        assert_eq!(parse_status(b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\n"), Some(503));
        for bad in [&b"HTTP/2 200\r\n"[..], b"HTTP/1.1 20\r\n", b"HTTP/1.1 abc\r\n", b"SSH-2.0\r\n", b""] {
            assert_eq!(parse_status(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn success_stops_client_errors_stop_and_the_rest_is_retried() {
        assert_eq!(classify(200), Outcome::Registered(200));
        assert_eq!(classify(204), Outcome::Registered(204));
        assert_eq!(classify(404), Outcome::Refused(404));
        assert!(matches!(classify(429), Outcome::Retry(_)));
        assert!(matches!(classify(408), Outcome::Retry(_)));
        assert!(matches!(classify(503), Outcome::Retry(_)));
        assert!(matches!(classify(301), Outcome::Retry(_)));
    }
}
