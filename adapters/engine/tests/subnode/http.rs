//! A small HTTP/1.1 client over a plain TCP connection, enough to read the console as a program
//! would: a request with headers and a body, the status, headers and body of the answer
//! (chunked or not), and a server-sent event stream read line by line.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// An answer.
#[derive(Debug)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The headers, names in lowercase.
    pub(crate) headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub(crate) body: String,
}

impl Response {
    /// The first value of header `name` (lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// `host:port` of a base URL such as `http://127.0.0.1:8080/`.
fn authority(base: &str) -> &str {
    base.trim_start_matches("http://").trim_end_matches('/')
}

/// Sends `method path` to the console at `base` with `headers` and `body`; the `Host` header is
/// the URL's unless `headers` has one.
pub(crate) fn request(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let host = authority(base);
    let mut stream = TcpStream::connect(host).expect("connect to the console");
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("a read timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).expect("send the request");
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader) {
            body.extend(chunk);
        }
    } else {
        reader.read_to_end(&mut body).expect("read the body");
    }
    Response { status, headers, body: String::from_utf8(body).expect("a UTF-8 body") }
}

/// `GET path`.
pub(crate) fn get(base: &str, path: &str) -> Response {
    request(base, "GET", path, &[], "")
}

/// `POST path` with a JSON body, as the console's page sends it.
pub(crate) fn post_json(base: &str, path: &str, body: &Value) -> Response {
    let headers = [("Content-Type", "application/json"), ("X-Subnode-Request", "1")];
    request(base, "POST", path, &headers, &body.to_string())
}

fn read_head(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a status line");
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("a header line");
        let line = line.trim_end();
        if line.is_empty() {
            return (status, headers);
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
}

/// The next chunk of a chunked body; `None` after the last.
fn read_chunk(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut size = String::new();
    reader.read_line(&mut size).ok()?;
    let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).ok()?;
    chunk.truncate(size);
    Some(chunk)
}

/// Opens the event stream at `path` and hands each `data:` line's JSON to the receiver, from a
/// thread that ends with the connection.
pub(crate) fn events(base: &str, path: &str, headers: &[(&str, &str)]) -> mpsc::Receiver<Value> {
    let host = authority(base).to_owned();
    let mut stream = TcpStream::connect(&host).expect("connect to the console");
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send the request");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader);
        assert_eq!(status, 200, "the event stream: {headers:?}");
        let mut pending = String::new();
        while let Some(chunk) = read_chunk(&mut reader) {
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                if let Some(data) = line.trim_end().strip_prefix("data: ") {
                    let value = serde_json::from_str(data)
                        .unwrap_or_else(|e| panic!("an event that is not JSON ({e}): {data}"));
                    if tx.send(value).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}
