//! The management API (axum, loopback by default): webhook destinations
//! (create, list, get, replace, delete, test), `/status`, `/alerts` and the
//! OpenAPI document. Every request needs the bearer token; every JSON answer
//! is the envelope `{success, errors, messages, result}`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::Quota;
use serde_json::{Value, json};

use crate::config::Api;
use crate::custom;
use crate::daemon::Shared;
use crate::retry::Limiter;
use crate::secret::{MASK, Secret};
use crate::timefmt::{from_millis, rfc3339};
use crate::webhook::registry::{Entry, Origin, RegistryError};
use crate::webhook::{Auth, DestinationSpec, deliver};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The OpenAPI 3 document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The `/webhooks` routes, also served under the Cloudflare-style prefix.
const PREFIXES: [&str; 2] = [
    "/webhooks",
    "/accounts/{account_id}/alerting/v3/destinations/webhooks",
];

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    shared: Arc<Shared>,
    token: Secret,
    limiter: Arc<Limiter>,
    /// How long pushed metrics count.
    push_ttl: Duration,
}

impl ApiState {
    /// State for the API configured by `api` (whose token was resolved).
    pub fn new(shared: Arc<Shared>, api: &Api) -> Self {
        let rate = NonZeroU32::new(api.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(api.burst).unwrap_or(NonZeroU32::MIN);
        ApiState {
            shared,
            token: api.token.clone().unwrap_or_default(),
            limiter: Arc::new(crate::retry::limiter(Quota::per_second(rate).allow_burst(burst))),
            push_ttl: api.push_ttl,
        }
    }
}

/// Serves the API on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState) {
    serve_router(listener, router(state), "management API").await
}

/// Serves `app` on `listener` until the task ends (`what` names it in logs).
///
/// HTTP/1.1 only, one task per connection, straight on hyper: axum's own
/// `serve` would add HTTP/2 detection and upgrades neither endpoint uses.
pub async fn serve_router(listener: tokio::net::TcpListener, app: Router, what: &'static str) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: wait, do not spin.
                tracing::warn!("{what}: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Every route, with authentication and rate limiting in front.
pub fn router(state: ApiState) -> Router {
    let mut r = Router::new()
        .route("/status", get(status))
        .route("/alerts", get(alerts))
        .route("/openapi.json", get(openapi))
        .route("/metrics/{group}", post(push));
    for prefix in PREFIXES {
        r = r
            .route(prefix, get(list).post(create))
            .route(
                &format!("{prefix}/{{id}}"),
                get(get_one).put(replace).delete(remove),
            )
            .route(&format!("{prefix}/{{id}}/test"), post(test));
    }
    r.fallback(|| async { fail(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            fail(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .with_state(state)
}

/// The envelope of a success.
fn ok(status: StatusCode, result: Value) -> Response {
    let body = json!({"success": true, "errors": [], "messages": [], "result": result});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The envelope of a failure with one error.
fn fail(status: StatusCode, message: &str) -> Response {
    fail_all(status, &[message.to_owned()])
}

/// The envelope of a failure listing every error.
fn fail_all(status: StatusCode, messages: &[String]) -> Response {
    let errors: Vec<Value> = messages
        .iter()
        .map(|m| json!({"code": status.as_u16(), "message": m}))
        .collect();
    let body = json!({"success": false, "errors": errors, "messages": [], "result": null});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// 429 with `Retry-After` when the API's own quota is spent.
async fn rate_limit(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    match crate::retry::check(&s.limiter) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut resp = fail(StatusCode::TOO_MANY_REQUESTS, "too many requests: slow down");
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            resp
        }
    }
}

/// 401 unless `Authorization: Bearer <token>` matches (compared in constant time).
async fn authenticate(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), s.token.expose().as_bytes()) && !given.is_empty() {
        return next.run(req).await;
    }
    let mut resp = fail(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"hostbeat\""),
    );
    resp
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    diff == 0 && a.len() == b.len()
}

/// A JSON body: 415 if not declared as JSON, 413 over [`BODY_LIMIT`], 400 if
/// it does not parse as a `T`.
async fn json_body<T: serde::de::DeserializeOwned>(req: Request) -> Result<T, Response> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json",
        ));
    }
    let bytes = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
        .await
        .map_err(|_| fail(StatusCode::PAYLOAD_TOO_LARGE, "the body is larger than 64 KiB"))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let message = crate::secret::redact_serde_message(&e.to_string());
        fail(StatusCode::BAD_REQUEST, &format!("body: {message}"))
    })
}

/// A registry refusal as a response.
fn refused(e: RegistryError) -> Response {
    match e {
        RegistryError::NotFound(_) => fail(StatusCode::NOT_FOUND, &e.to_string()),
        RegistryError::ReadOnly(_) => fail(StatusCode::CONFLICT, &e.to_string()),
        RegistryError::Invalid(v) => {
            let messages: Vec<String> = v.iter().map(|(f, m)| format!("{f}: {m}")).collect();
            fail_all(StatusCode::BAD_REQUEST, &messages)
        }
        RegistryError::Storage(_) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error: the change was not saved",
        ),
    }
}

fn time(ms: Option<u64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(rfc3339(from_millis(ms))))
}

/// A destination with its write-only fields masked (`secret` shown once when
/// `revealed` holds the generated value).
fn view(e: &Entry, revealed: Option<&str>) -> Value {
    let spec = &e.spec;
    let status = e.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let masked = |s: &Option<Secret>| s.as_ref().map(|_| MASK);
    let (header_name, query_param) = match &e.dest.auth {
        Auth::Header { name, .. } => (Some(name.as_str()), None),
        Auth::Query { param, .. } => (None, Some(param.as_str())),
        _ => (None, None),
    };
    json!({
        "id": e.id,
        "name": e.dest.name,
        "url": e.dest.url.as_str(),
        "endpoint": e.dest.url.as_str(),
        "type": e.dest.format,
        "isAlertHook": e.dest.is_alert_hook,
        "authType": spec.auth_type.unwrap_or_default(),
        "userName": spec.user_name,
        "password": masked(&spec.password),
        "token": masked(&spec.token),
        "headerName": header_name,
        "queryParam": query_param,
        "secret": revealed.unwrap_or(MASK),
        "created_at": time((e.origin == Origin::Api).then_some(e.created_ms)),
        "last_success": time(status.last_success_ms),
        "last_failure": time(status.last_failure_ms),
        "last_error": status.last_error,
        "pending": status.pending,
        "disabled": status.disabled,
        "source": if e.origin == Origin::Api { "api" } else { "config" },
        "readOnly": e.origin == Origin::Config,
    })
}

fn id_of(params: &HashMap<String, String>) -> String {
    params.get("id").cloned().unwrap_or_default()
}

async fn list(State(s): State<ApiState>) -> Response {
    let reg = s.shared.lock_registry();
    let all: Vec<Value> = reg.entries().iter().map(|e| view(e, None)).collect();
    ok(StatusCode::OK, Value::Array(all))
}

async fn get_one(State(s): State<ApiState>, Path(p): Path<HashMap<String, String>>) -> Response {
    let id = id_of(&p);
    match s.shared.lock_registry().get(&id) {
        Some(e) => ok(StatusCode::OK, view(e, None)),
        None => refused(RegistryError::NotFound(id)),
    }
}

async fn create(State(s): State<ApiState>, req: Request<Body>) -> Response {
    let spec = match json_body::<DestinationSpec>(req).await {
        Ok(spec) => spec,
        Err(resp) => return resp,
    };
    let mut reg = s.shared.lock_registry();
    match reg.create(spec) {
        Ok((id, generated)) => {
            let e = reg.get(&id).expect("just created");
            tracing::info!(id = %id, name = %e.dest.name, "webhook destination created");
            ok(StatusCode::CREATED, view(e, generated.as_deref()))
        }
        Err(e) => refused(e),
    }
}

async fn replace(
    State(s): State<ApiState>,
    Path(p): Path<HashMap<String, String>>,
    req: Request,
) -> Response {
    let id = id_of(&p);
    // 404 and 409 before looking at the body.
    match s.shared.lock_registry().get(&id).map(|e| e.origin) {
        None => return refused(RegistryError::NotFound(id)),
        Some(Origin::Config) => return refused(RegistryError::ReadOnly(id)),
        Some(Origin::Api) => {}
    }
    let spec = match json_body::<DestinationSpec>(req).await {
        Ok(spec) => spec,
        Err(resp) => return resp,
    };
    match s.shared.lock_registry().update(&id, spec) {
        Ok(()) => {
            tracing::info!(id = %id, "webhook destination replaced");
            ok(StatusCode::OK, json!({ "id": id }))
        }
        Err(e) => refused(e),
    }
}

async fn remove(State(s): State<ApiState>, Path(p): Path<HashMap<String, String>>) -> Response {
    let id = id_of(&p);
    match s.shared.lock_registry().delete(&id) {
        Ok(()) => {
            tracing::info!(id = %id, "webhook destination deleted");
            ok(StatusCode::OK, json!({ "id": id }))
        }
        Err(e) => refused(e),
    }
}

async fn test(State(s): State<ApiState>, Path(p): Path<HashMap<String, String>>) -> Response {
    let id = id_of(&p);
    let target = s.shared.lock_registry().test_send(&id);
    let (dest, key, client, job) = match target {
        Ok(t) => t,
        Err(e) => return refused(e),
    };
    let a = deliver::attempt(&client, &dest, &key, &job.id, &job.body).await;
    let error = match a.result {
        deliver::Outcome::Delivered => None,
        deliver::Outcome::Retry(_, e) | deliver::Outcome::Fail(e) | deliver::Outcome::Gone(e) => Some(e),
    };
    tracing::info!(id = %id, status = ?a.status, "webhook test sent");
    ok(
        StatusCode::OK,
        json!({
            "id": id,
            "webhook_id": job.id,
            "delivered": error.is_none(),
            "status": a.status,
            "latency_ms": a.latency.as_secs_f64() * 1e3,
            "error": error,
        }),
    )
}

/// `POST /metrics/{group}`: a JSON object `{metric: number | string}` that
/// replaces the group's metrics until `api.push_ttl` has passed.
async fn push(
    State(s): State<ApiState>,
    Path(p): Path<HashMap<String, String>>,
    req: Request<Body>,
) -> Response {
    let group = p.get("group").map_or("", String::as_str);
    let object = match json_body::<serde_json::Map<String, Value>>(req).await {
        Ok(object) => object,
        Err(resp) => return resp,
    };
    let group_problem = (!custom::valid_name(group, false)).then(|| {
        format!(
            "group {group:?}: 1 to {} letters, digits, '_' or '-'",
            custom::MAX_NAME
        )
    });
    let metrics = match (custom::from_json(object), group_problem) {
        (Ok(metrics), None) => metrics,
        (result, group_problem) => {
            let problems: Vec<String> = group_problem
                .into_iter()
                .chain(result.err().into_iter().flatten())
                .collect();
            return fail_all(StatusCode::BAD_REQUEST, &problems);
        }
    };
    let mut groups = s.shared.custom.lock().unwrap_or_else(|e| e.into_inner());
    if groups.is_plugin(group) {
        return fail(
            StatusCode::CONFLICT,
            &format!("group {group:?} belongs to a [[plugin]] of the configuration"),
        );
    }
    let names: Vec<&String> = metrics.keys().collect();
    let result = json!({
        "group": group,
        "metrics": names,
        "expires_at": rfc3339(SystemTime::now() + s.push_ttl),
    });
    groups.set(group, metrics, Some(Instant::now() + s.push_ttl));
    ok(StatusCode::OK, result)
}

async fn status(State(s): State<ApiState>) -> Response {
    let sh = &s.shared;
    let pb = sh.postback.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (rules, firing) = {
        let alerts = sh.lock_alerts();
        (alerts.evaluator().rule_count(), alerts.evaluator().firing().len())
    };
    let webhooks: Vec<Value> = sh
        .lock_registry()
        .entries()
        .iter()
        .map(|e| {
            let st = e.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
            json!({
                "id": e.id,
                "name": e.dest.name,
                "source": if e.origin == Origin::Api { "api" } else { "config" },
                "pending": st.pending,
                "last_success": time(st.last_success_ms),
                "last_failure": time(st.last_failure_ms),
                "last_error": st.last_error,
                "disabled": st.disabled,
            })
        })
        .collect();
    let last_sample = sh.last_sample_ms.load(Ordering::Relaxed);
    ok(
        StatusCode::OK,
        json!({
            "version": crate::payload::VERSION,
            "started_at": rfc3339(sh.started_at),
            "uptime_s": sh.started.elapsed().as_secs_f64(),
            "last_sample_at": time((last_sample > 0).then_some(last_sample)),
            "postback": {
                "url": *sh.postback_url.lock().unwrap_or_else(|p| p.into_inner()),
                "last_attempt_at": time(pb.last_attempt_ms),
                "last_outcome": pb.last_outcome,
                "last_status": pb.last_status,
                "delivered": pb.stats.delivered,
                "failed_attempts": pb.stats.failed_attempts,
                "rejected": pb.stats.rejected,
                "dropped": pb.stats.spool.dropped_for_size + pb.stats.spool.dropped_for_age,
                "corrupt": pb.stats.spool.corrupt,
                "memory_only": pb.stats.spool.memory_only,
                "queued": pb.stats.queued,
                "oldest_queued_at": time(pb.oldest_queued_ms),
            },
            "alerts": { "rules": rules, "firing": firing },
            "webhooks": webhooks,
        }),
    )
}

async fn alerts(State(s): State<ApiState>) -> Response {
    let states = s.shared.lock_alerts().evaluator().states();
    let all: Vec<Value> = states
        .into_iter()
        .map(|a| {
            let series = crate::alert::Alert::series_name(&a.metric, &a.labels);
            let labels: serde_json::Map<String, Value> =
                a.labels.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            json!({
                "rule": a.rule,
                "metric": a.metric,
                "series": series,
                "labels": labels,
                "state": a.state,
                "severity": a.severity.map(|s| s.as_str()),
                "started_at": a.started_at.map(rfc3339),
                "value": a.value,
                "fingerprint": a.fingerprint,
            })
        })
        .collect();
    ok(StatusCode::OK, Value::Array(all))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn openapi_document_is_json_and_lists_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for prefix in PREFIXES {
            for (path, methods) in [
                (prefix.to_owned(), &["get", "post"][..]),
                (format!("{prefix}/{{id}}"), &["get", "put", "delete"][..]),
                (format!("{prefix}/{{id}}/test"), &["post"][..]),
            ] {
                for m in methods {
                    assert!(paths[&path].get(*m).is_some(), "{m} {path} undocumented");
                }
            }
        }
        for path in ["/status", "/alerts", "/openapi.json"] {
            assert!(paths[path].get("get").is_some(), "{path}");
        }
    }
}
