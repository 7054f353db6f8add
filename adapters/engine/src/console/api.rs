//! The JSON API: the registry, commands with their results, and the engine's own state. The
//! objects are the ones `subnode ... --json` prints.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::{json_error, Shared};
use crate::desired::InstanceState;
use crate::engine::now_ms;
use crate::error::Error;
use crate::record::ResultRecord;
use crate::registry::Instance;
use crate::send::SendRequest;
use crate::store::HistoryQuery;
use crate::target::{Selector, Target};

/// Commands an instance's page shows.
const INSTANCE_HISTORY: usize = 20;
/// The longest a `POST /api/commands` may wait, as `subnode send --timeout`.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// An engine error as an HTTP answer.
fn error(e: &Error) -> Response {
    let status = match e {
        Error::UnknownInstance(_) | Error::UnknownRequest(_) => StatusCode::NOT_FOUND,
        Error::NoTargets
        | Error::InvalidTarget(_)
        | Error::InvalidParameters(_)
        | Error::InvalidCommand(_)
        | Error::Setting(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    json_error(status, e.to_string())
}

/// The instances the query's `node`, `status`, `version` and `host` select (each optional; an
/// empty one selects all), read as `subnode nodes --where` reads them.
fn selector(query: &HashMap<String, String>) -> Result<Selector, String> {
    let mut selector = Selector::default();
    for key in ["node", "status", "version", "host"] {
        if let Some(value) = query.get(key).filter(|v| !v.is_empty()) {
            selector.set_field(key, value).map_err(|e| e.to_string())?;
        }
    }
    Ok(selector)
}

/// `GET /api/engine`: the broker connection and the engine's counters.
pub(super) async fn engine(State(shared): State<Shared>) -> Json<Value> {
    let s = shared.engine.stats();
    Json(json!({
        "connected": shared.engine.is_connected(),
        "connection_problem": shared.engine.connection_problem(),
        "stats": {
            "messages": s.messages, "heartbeats": s.heartbeats, "rejected": s.rejected, "oversized": s.oversized,
            "registry_full": s.registry_full, "json_not_stored": s.json_not_stored,
            "results_not_stored": s.results_not_stored, "flush_failures": s.flush_failures,
            "rows_written": s.rows_written,
            "unsaved_rows": s.unsaved_rows, "commands_succeeded": s.commands_succeeded,
            "commands_failed": s.commands_failed, "commands_timed_out": s.commands_timed_out,
        },
    }))
}

/// `GET /api/nodes[?node=&status=&version=&host=]`: the instances, as `subnode nodes --json`.
pub(super) async fn nodes(State(shared): State<Shared>, Query(query): Query<HashMap<String, String>>) -> Response {
    let selector = match selector(&query) {
        Ok(selector) => selector,
        Err(why) => return json_error(StatusCode::BAD_REQUEST, why),
    };
    // Copied out under the registry lock, made into JSON after it, so ingest waits for a copy only.
    let chosen: Vec<Instance> =
        shared.engine.with_registry(|r| r.instances().iter().filter(|i| selector.lists(i)).cloned().collect());
    let now = now_ms();
    let with_sync = |i: &Instance| {
        let mut value = i.to_json(now);
        let sync = shared.engine.desired_sync(&i.node_name, &i.instance_id);
        value["desired_version"] = sync.desired_version.into();
        value["reported_version"] = sync.reported_version.into();
        value["in_sync"] = sync.in_sync.into();
        value
    };
    Json(Value::from(chosen.iter().map(with_sync).collect::<Vec<_>>())).into_response()
}

/// `GET /api/nodes/{instance_id}`: the instance, its register message, its chart samples and
/// the commands it was sent.
pub(super) async fn node(State(shared): State<Shared>, Path(instance_id): Path<String>) -> Response {
    let Some(inst) = shared.engine.instance(&instance_id) else {
        return error(&Error::UnknownInstance(instance_id));
    };
    let mut value = inst.to_json(now_ms());
    let target = Target::Instance { node_name: Some(inst.node_name.clone()), instance_id: instance_id.clone() };
    value["desired"] = shared.engine.desired_state(&target).first().map_or(Value::Null, InstanceState::to_json);
    value["register"] =
        inst.register_json.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()).unwrap_or(Value::Null);
    value["trend"] = shared
        .live
        .trend(&instance_id)
        .iter()
        .map(|s| {
            json!({"at_ms": s.at_ms(), "cpu_percent": f64::from(s.cpu_centipercent) / 100.0, "memory_mb": s.memory_mb})
        })
        .collect();
    let query = HistoryQuery { instance: Some(instance_id), ..HistoryQuery::latest(INSTANCE_HISTORY) };
    value["history"] = match shared.engine.query_history(query).await {
        Ok(history) => history.iter().map(|(c, rs)| c.to_json_with(rs)).collect(),
        Err(e) => return error(&e),
    };
    Json(value).into_response()
}

/// `GET /api/commands[?limit=20&before=REQUEST_ID&instance=ID]`: the history, newest first.
pub(super) async fn commands(State(shared): State<Shared>, Query(query): Query<HashMap<String, String>>) -> Response {
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(n @ 1..=1000)) => n,
        Some(_) => return json_error(StatusCode::BAD_REQUEST, "limit: expected a number from 1 to 1000"),
    };
    let query = HistoryQuery {
        limit,
        before: query.get("before").cloned(),
        instance: query.get("instance").cloned(),
        request_id: None,
    };
    match shared.engine.query_history(query).await {
        Ok(history) => {
            Json(Value::from(history.iter().map(|(c, rs)| c.to_json_with(rs)).collect::<Vec<_>>())).into_response()
        }
        Err(e) => error(&e),
    }
}

/// `GET /api/commands/{request_id}`: one command with its results.
pub(super) async fn command(State(shared): State<Shared>, Path(request_id): Path<String>) -> Response {
    let query = HistoryQuery { request_id: Some(request_id.clone()), ..HistoryQuery::latest(1) };
    match shared.engine.query_history(query).await {
        Ok(history) => match history.first() {
            Some((c, rs)) => Json(c.to_json_with(rs)).into_response(),
            None => error(&Error::UnknownRequest(request_id)),
        },
        Err(e) => error(&e),
    }
}

/// Reads `POST /api/commands`' body: `target` as `subnode send` takes it, `command`, and
/// optionally `parameters` (an object), `timeout` (`"10s"` or milliseconds), `retries`, `where`
/// (`{"version": "1.2"}` and so on, narrowing a set target) and `request_id`.
fn request(body: &Value) -> Result<SendRequest, String> {
    let body = body.as_object().ok_or("the body must be a JSON object")?;
    let text = |key: &str| body.get(key).and_then(Value::as_str);
    let target = text("target").ok_or("target: expected a string such as NODE/* or an instance id")?;
    let command = text("command").ok_or("command: expected a string")?;
    let mut target = Target::parse(target);
    if let Some(filters) = body.get("where").filter(|w| !w.is_null()) {
        let filters = filters.as_object().ok_or("where: expected an object such as {\"version\": \"1.2\"}")?;
        target = narrowed(target, filters)?;
    }
    let mut request = SendRequest::new(target, command);
    match body.get("parameters") {
        None | Some(Value::Null) => {}
        Some(p @ Value::Object(_)) => request.parameters = p.to_string(),
        Some(_) => return Err("parameters: expected an object".into()),
    }
    request.timeout = match body.get("timeout") {
        None | Some(Value::Null) => request.timeout,
        Some(Value::String(d)) => {
            subnodesync_host::config::parse_duration(d).map_err(|e| format!("timeout: expected {e}"))?
        }
        Some(Value::Number(ms)) => ms.as_u64().map(Duration::from_millis).ok_or("timeout: expected milliseconds")?,
        Some(_) => return Err("timeout: expected a duration such as \"10s\" or milliseconds".into()),
    };
    if request.timeout.is_zero() || request.timeout > MAX_TIMEOUT {
        return Err("timeout: expected 1 ms to 24 h".into());
    }
    if let Some(retries) = body.get("retries").filter(|r| !r.is_null()) {
        request.retries = retries
            .as_u64()
            .filter(|r| *r <= 100)
            .and_then(|r| u32::try_from(r).ok())
            .ok_or("retries: expected 0 to 100")?;
    }
    request.request_id = text("request_id").map(str::to_owned);
    Ok(request)
}

/// `target` narrowed to the registry's instances matching `filters`.
fn narrowed(target: Target, filters: &Map<String, Value>) -> Result<Target, String> {
    let mut selector = match target {
        Target::Node(node) => Selector { node_name: Some(node), ..Selector::default() },
        Target::Select(s) => s,
        Target::Instance { .. } => return Err("where: needs a set target, NODE/* or *".into()),
    };
    for (key, value) in filters {
        let value = value.as_str().ok_or_else(|| format!("where.{key}: expected a string"))?;
        selector.set_field(key, value).map_err(|e| format!("where.{e}"))?;
    }
    Ok(Target::Select(selector))
}

/// `POST /api/commands`: sends, waits for every result or the timeout, and answers
/// `{"request_id", "results": [...], "outcome": {...}}`.
pub(super) async fn send(State(shared): State<Shared>, body: String) -> Response {
    let parsed = serde_json::from_str::<Value>(&body).map_err(|e| format!("the body is not JSON: {e}"));
    let request = match parsed.and_then(|body| request(&body)) {
        Ok(request) => request,
        Err(why) => return json_error(StatusCode::BAD_REQUEST, why),
    };
    match shared.engine.send(&request).await {
        Ok(outcome) => Json(json!({
            "request_id": outcome.request_id,
            "results": outcome.results.values().map(ResultRecord::to_json).collect::<Vec<_>>(),
            "outcome": {
                "verdict": outcome.verdict().as_str(),
                "success": outcome.all_succeeded(),
                "expected": outcome.expected,
                "answered": outcome.results.len(),
                "failed": outcome.results.values().filter(|r| !r.success).count(),
                "timed_out": outcome.timed_out,
                "attempts": outcome.attempts,
            },
        }))
        .into_response(),
        Err(e) => error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Status;

    #[test]
    fn a_command_request_reads_like_subnode_send() {
        let r = request(&json!({
            "target": "shop/*", "command": "echo", "parameters": {"a": 1}, "timeout": "2s",
            "where": {"version": "1.2", "status": "online"}, "retries": 0, "request_id": "ui-1"
        }))
        .unwrap();
        let selector = Selector {
            node_name: Some("shop".into()),
            version: Some("1.2".into()),
            status: Some(Status::Online),
            ..Selector::default()
        };
        assert_eq!(r.target, Target::Select(selector));
        assert_eq!((r.parameters.as_str(), r.timeout, r.retries), (r#"{"a":1}"#, Duration::from_secs(2), 0));
        assert_eq!(r.request_id.as_deref(), Some("ui-1"));
        assert_eq!(
            request(&json!({"target": "a-h-1", "command": "ping", "timeout": 250})).unwrap().timeout.as_millis(),
            250
        );
        for (bad, why) in [
            (json!([]), "the body must be"),
            (json!({"command": "ping"}), "target:"),
            (json!({"target": "x"}), "command:"),
            (json!({"target": "x", "command": "c", "parameters": [1]}), "parameters:"),
            (json!({"target": "x", "command": "c", "timeout": "25h"}), "timeout:"),
            (json!({"target": "x", "command": "c", "timeout": 0}), "timeout:"),
            (json!({"target": "x", "command": "c", "retries": 101}), "retries:"),
            (json!({"target": "x", "command": "c", "where": {"version": "1"}}), "where: needs a set target"),
            (json!({"target": "*", "command": "c", "where": {"colour": "red"}}), "where.colour"),
            (json!({"target": "*", "command": "c", "where": {"status": "asleep"}}), "where.status"),
        ] {
            let e = request(&bad).unwrap_err();
            assert!(e.starts_with(why), "{bad}: {e}");
        }
    }
}
