//! Who may use the console: everyone on loopback, else whoever presents the token (a bearer
//! header for programs, a session cookie after the login form for people), and nothing a page on
//! another site can make a browser do.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use subnodesync_host::config::Secret;

use super::{json_error, Shared};
use crate::engine::lock;

/// The cookie a login sets.
const SESSION_COOKIE: &str = "subnode_session";
/// The header every state-changing request from the page carries. A page on another site
/// cannot send it without a CORS preflight, which the console never answers.
pub(crate) const CSRF_HEADER: &str = "x-subnode-request";
/// Sessions remembered at once; a new login beyond it ends the oldest.
const MAX_SESSIONS: usize = 1024;
/// How long each wrong token waits for its answer. Wrong tokens take turns, whoever sends them,
/// so guessing runs at two tries a second however many connections try.
const WRONG_TOKEN_DELAY: Duration = Duration::from_millis(500);
/// How far ahead the turns may be booked; beyond it a wrong token is refused at once (429)
/// rather than left waiting, so a flood of guesses holds no memory.
const WRONG_TOKEN_QUEUE: Duration = Duration::from_secs(10);
/// The shortest token accepted: guessing one at two tries a second must be hopeless.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

/// The console's access rules.
#[derive(Debug)]
pub(crate) struct Auth {
    /// The token; `None` on loopback without one.
    token: Option<Secret>,
    /// Session ids handed out by the login form, oldest first.
    sessions: Mutex<VecDeque<String>>,
    /// When the next wrong token may be answered.
    next_refusal: Mutex<tokio::time::Instant>,
}

impl Auth {
    /// Rules for `token`.
    pub(crate) fn new(token: Option<Secret>) -> Self {
        Self { token, sessions: Mutex::new(VecDeque::new()), next_refusal: Mutex::new(tokio::time::Instant::now()) }
    }

    /// Whether `presented` is the token; comparing every byte whatever the first mismatch, so
    /// the time taken says nothing about how much of a guess was right.
    fn is_token(&self, presented: &str) -> bool {
        let Some(token) = &self.token else { return false };
        let (a, b) = (token.expose().as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
    }

    /// How the request proves who it is, if it does.
    fn credential(&self, headers: &HeaderMap) -> Option<Credential> {
        if self.token.is_none() {
            return Some(Credential::Loopback);
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|t| self.is_token(t.trim()));
        if bearer.is_some() {
            return Some(Credential::Bearer);
        }
        let session = cookie(headers, SESSION_COOKIE)?;
        lock(&self.sessions).iter().any(|s| s == session).then_some(Credential::Session)
    }

    /// Waits for a wrong token's turn to be refused; `false` if the turns are booked too far
    /// ahead to wait.
    async fn refusal_turn(&self) -> bool {
        let now = tokio::time::Instant::now();
        let turn = {
            let mut next = lock(&self.next_refusal);
            let turn = (*next).max(now) + WRONG_TOKEN_DELAY;
            if turn > now + WRONG_TOKEN_QUEUE {
                return false;
            }
            *next = turn;
            turn
        };
        tokio::time::sleep_until(turn).await;
        true
    }

    /// A new session id, remembered; `None` if the system has no randomness to give.
    fn open_session(&self) -> Option<String> {
        let id = super::random_id().ok()?;
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSIONS {
            sessions.pop_front();
        }
        sessions.push_back(id.clone());
        Some(id)
    }
}

/// What let a request in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    /// No token is set: the console listens on loopback only.
    Loopback,
    /// `Authorization: Bearer <token>`: a program, which a browser never sends on its own.
    Bearer,
    /// The login form's cookie: a person in a browser.
    Session,
}

/// The value of cookie `name`.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// Whether the `Host` a browser sent names this machine's loopback: without a token, a page on
/// another site that rebinds its own name to 127.0.0.1 must not get answers.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Lets a request through, or answers it: the login form for a page, 401 for the API.
pub(crate) async fn guard(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let auth = &shared.auth;
    if auth.token.is_none() && !loopback_host(headers) {
        return json_error(StatusCode::FORBIDDEN, "this console answers only to localhost without a token");
    }
    let path = request.uri().path();
    if path == "/login" || path.starts_with("/assets/") {
        return next.run(request).await;
    }
    let Some(credential) = auth.credential(headers) else {
        // A token or session that is wrong (not merely absent) is a guess: it waits its turn.
        if (headers.contains_key(header::AUTHORIZATION) || cookie(headers, SESSION_COOKIE).is_some())
            && !auth.refusal_turn().await
        {
            return json_error(StatusCode::TOO_MANY_REQUESTS, "too many wrong tokens; try again later");
        }
        return if path.starts_with("/api/") || path == "/metrics" {
            let mut denied = json_error(StatusCode::UNAUTHORIZED, "a token is needed: Authorization: Bearer <token>");
            denied.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            denied
        } else {
            Redirect::to("/login").into_response()
        };
    };
    // A browser sends cookies, and reaches loopback, whichever site asks it to: a state-changing
    // request from one must prove it comes from the console's own page.
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state && credential != Credential::Bearer && !headers.contains_key(CSRF_HEADER) {
        return json_error(StatusCode::FORBIDDEN, "a state-changing request needs the X-Subnode-Request header");
    }
    next.run(request).await
}

/// `GET /login`: the form.
pub(crate) async fn login_form() -> Html<String> {
    Html(login_page(""))
}

/// `POST /login`: a session cookie for the right token, the form again for a wrong one.
pub(crate) async fn login(State(shared): State<Shared>, body: String) -> Response {
    let presented = body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(k, v)| (k == "token").then(|| form_decode(v)))
        .unwrap_or_default();
    if !shared.auth.is_token(&presented) {
        if !shared.auth.refusal_turn().await {
            return (StatusCode::TOO_MANY_REQUESTS, Html(login_page("Too many wrong tokens: try again later.")))
                .into_response();
        }
        return (StatusCode::UNAUTHORIZED, Html(login_page("That is not the token."))).into_response();
    }
    let Some(session) = shared.auth.open_session() else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "no randomness for a session id");
    };
    let cookie = format!("{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/");
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// A value of an `application/x-www-form-urlencoded` body, decoded.
fn form_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The login page, with `problem` said above the form (a fixed text, never the input).
fn login_page(problem: &str) -> String {
    include_str!("assets/login.html").replace("{{problem}}", problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_loopback_names_count_as_loopback() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "LOCALHOST",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(loopback_host(&headers(&[(header::HOST, host)])), "{host}");
        }
        for host in ["evil.example:8080", "10.0.0.1", "[2001:db8::1]:80", "localhost.evil.example", ""] {
            assert!(!loopback_host(&headers(&[(header::HOST, host)])), "{host}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn the_token_is_taken_as_a_bearer_or_through_a_session_and_nothing_else() {
        let auth = Auth::new(Some(Secret::new("s3cret")));
        assert_eq!(auth.credential(&headers(&[(header::AUTHORIZATION, "Bearer s3cret")])), Some(Credential::Bearer));
        for wrong in ["Bearer s3cre", "Bearer s3cret!", "Basic s3cret", "s3cret"] {
            assert_eq!(auth.credential(&headers(&[(header::AUTHORIZATION, wrong)])), None, "{wrong}");
        }
        let session = auth.open_session().unwrap();
        let with_cookie = headers(&[(header::COOKIE, &format!("theme=dark; {SESSION_COOKIE}={session}"))]);
        assert_eq!(auth.credential(&with_cookie), Some(Credential::Session));
        assert_eq!(auth.credential(&headers(&[(header::COOKIE, "subnode_session=made-up")])), None);
        assert_eq!(Auth::new(None).credential(&HeaderMap::new()), Some(Credential::Loopback));
    }

    #[test]
    fn sessions_are_bounded_and_the_oldest_goes_first() {
        let auth = Auth::new(Some(Secret::new("t")));
        let first = auth.open_session().unwrap();
        for _ in 0..MAX_SESSIONS {
            auth.open_session();
        }
        assert_eq!(lock(&auth.sessions).len(), MAX_SESSIONS);
        assert!(!lock(&auth.sessions).contains(&first));
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_tokens_take_turns_and_a_flood_is_refused_at_once() {
        let auth = std::sync::Arc::new(Auth::new(Some(Secret::new("t"))));
        let start = tokio::time::Instant::now();
        let turns: Vec<_> = (0..4)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { (auth.refusal_turn().await, tokio::time::Instant::now()) })
            })
            .collect();
        let mut answered = Vec::new();
        for turn in turns {
            let (waited, at) = turn.await.unwrap();
            assert!(waited);
            answered.push(at - start);
        }
        answered.sort();
        assert_eq!(answered, [1, 2, 3, 4].map(|n| WRONG_TOKEN_DELAY * n));
        // Book the queue full: the next guess is refused without waiting.
        for _ in 0..20 {
            let auth = auth.clone();
            tokio::spawn(async move { auth.refusal_turn().await });
        }
        tokio::task::yield_now().await;
        let before = tokio::time::Instant::now();
        assert!(!auth.refusal_turn().await);
        assert_eq!(tokio::time::Instant::now(), before);
    }

    #[test]
    fn form_values_are_decoded() {
        assert_eq!(form_decode("a+b%21%zz%"), "a b!%zz%");
    }
}
