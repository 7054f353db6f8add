//! A tunnel through an HTTP proxy: `CONNECT host:port`, then the stream is the broker's.

use std::io;

use futures_util::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::ProxyUrl;

/// The longest proxy response head read before giving up on it.
const MAX_HEAD: usize = 8 * 1024;

/// Asks the proxy at the other end of `stream` for a tunnel to `host:port`; on `Ok` the stream
/// carries the broker's bytes. A proxy that refuses (any status but 2xx) is an error naming
/// the status.
pub(crate) async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
) -> io::Result<()> {
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(credentials) = &proxy.credentials {
        let token = data_encoding::BASE64.encode(credentials.expose().as_bytes());
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;

    // One byte at a time, so nothing past the head (the tunnel's first bytes) is read here.
    let mut head = Vec::with_capacity(128);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(refused(proxy, "its answer to CONNECT has no end"));
        }
        let mut byte = [0];
        if stream.read(&mut byte).await? == 0 {
            return Err(refused(proxy, "it closed the connection before answering CONNECT"));
        }
        head.push(byte[0]);
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(refused(proxy, "its answer to CONNECT is not HTTP")),
    }
    match response.code {
        Some(200..=299) => Ok(()),
        Some(code) => {
            let reason = response.reason.unwrap_or_default();
            Err(refused(proxy, &format!("it answered CONNECT {authority} with {code} {reason}")))
        }
        None => Err(refused(proxy, "its answer to CONNECT has no status")),
    }
}

fn refused(proxy: &ProxyUrl, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, format!("proxy {proxy}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_proxy_url, Secret};

    /// A stream that replays `input` and records what was written.
    struct Script {
        input: futures_util::io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl AsyncRead for Script {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::pin::Pin::new(&mut self.input).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Script {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.written.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn run(answer: &str, proxy: &ProxyUrl, host: &str) -> (io::Result<()>, String, Vec<u8>) {
        let mut stream =
            Script { input: futures_util::io::Cursor::new(answer.as_bytes().to_vec()), written: Vec::new() };
        let result = futures_util::FutureExt::now_or_never(tunnel(&mut stream, proxy, host, 443)).expect("no waiting");
        let mut rest = Vec::new();
        futures_util::FutureExt::now_or_never(stream.input.read_to_end(&mut rest)).expect("no waiting").unwrap();
        (result, String::from_utf8(stream.written).unwrap(), rest)
    }

    #[test]
    fn connect_asks_for_the_broker_and_leaves_the_tunnels_bytes_unread() {
        let proxy = parse_proxy_url("http://proxy:3128").unwrap();
        let (result, request, rest) = run("HTTP/1.1 200 Connection established\r\n\r\nTLS", &proxy, "broker");
        result.unwrap();
        assert_eq!(request, "CONNECT broker:443 HTTP/1.1\r\nHost: broker:443\r\n\r\n");
        assert_eq!(rest, b"TLS");
    }

    #[test]
    fn credentials_go_in_a_basic_proxy_authorization_and_ipv6_hosts_in_brackets() {
        let proxy = ProxyUrl { host: "p".into(), port: 1, credentials: Some(Secret::new("user:pw")) };
        let (result, request, _) = run("HTTP/1.0 200 OK\r\n\r\n", &proxy, "::1");
        result.unwrap();
        assert_eq!(
            request,
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nProxy-Authorization: Basic dXNlcjpwdw==\r\n\r\n"
        );
    }

    #[test]
    fn a_refusal_or_a_broken_answer_is_an_error_naming_the_proxy_and_the_status() {
        let proxy = parse_proxy_url("http://proxy:3128").unwrap();
        let (result, _, _) = run("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", &proxy, "b");
        let error = result.unwrap_err().to_string();
        assert_eq!(error, "proxy http://proxy:3128: it answered CONNECT b:443 with 407 Proxy Authentication Required");
        let (result, _, _) = run("HTTP/1.1 200 OK\r\n", &proxy, "b");
        assert!(result.unwrap_err().to_string().contains("closed the connection"));
        let (result, _, _) = run("SSH-2.0-x\r\n\r\n", &proxy, "b");
        assert!(result.unwrap_err().to_string().contains("not HTTP"));
    }
}
