//! The journal's admin API: `GET /_echo/requests` (filters: `endpoint`,
//! `method`, `path`, `unmatched=true`, `limit`), `GET /_echo/requests/count`
//! with the same filters, and `DELETE /_echo/requests`.

use serde_json::{json, Value};

use crate::journal::{Entry, Outcome};
use crate::router::matcher::{Body, Facts};
use crate::router::Gateway;

#[derive(Default)]
struct Filter {
    endpoint: Option<String>,
    method: Option<String>,
    path: Option<String>,
    unmatched: bool,
    limit: Option<usize>,
}

impl Filter {
    fn parse(query: Option<&str>) -> Filter {
        let mut f = Filter::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "endpoint" => f.endpoint = Some(v.into_owned()),
                "method" => f.method = Some(v.into_owned()),
                "path" => f.path = Some(v.into_owned()),
                "unmatched" => f.unmatched = matches!(v.as_ref(), "true" | "1" | "yes"),
                "limit" => f.limit = v.parse().ok(),
                _ => {}
            }
        }
        f
    }

    fn keeps(&self, e: &Entry) -> bool {
        self.endpoint
            .as_deref()
            .is_none_or(|id| e.endpoint.as_deref() == Some(id))
            && self.method.as_deref().is_none_or(|m| e.method == m)
            && self.path.as_deref().is_none_or(|p| e.path == p)
            && (!self.unmatched || e.outcome == Outcome::Unmatched)
    }
}

/// `(status, JSON body)` of a journal request.
pub fn handle(
    gw: &Gateway,
    method: &http::Method,
    count_only: bool,
    query: Option<&str>,
) -> (u16, Value) {
    let Some(journal) = gw.journal.as_ref() else {
        return (
            404,
            json!({"errors": [{"status": "404", "code": "not_found", "title": "Not found",
                "detail": "the request journal is off ([journal] enabled = false)"}]}),
        );
    };
    if *method == http::Method::DELETE && !count_only {
        journal.clear();
        return (204, Value::Null);
    }
    if *method != http::Method::GET && *method != http::Method::HEAD {
        let allow = if count_only { "GET" } else { "GET, DELETE" };
        return (
            405,
            json!({"errors": [{"status": "405", "code": "method_not_allowed", "title": "Method not allowed",
                "detail": format!("allowed: {allow}")}]}),
        );
    }
    let filter = Filter::parse(query);
    let kept: Vec<_> = journal
        .entries()
        .into_iter()
        .filter(|e| filter.keeps(e))
        .collect();
    let meta = json!({"count": kept.len(), "capacity": journal.capacity(), "recorded": journal.recorded()});
    if count_only {
        return (200, json!({ "meta": meta }));
    }
    let skip = filter.limit.map_or(0, |l| kept.len().saturating_sub(l));
    let data: Vec<Value> = kept[skip..].iter().map(|e| resource(gw, e)).collect();
    (200, json!({ "data": data, "meta": meta }))
}

fn resource(gw: &Gateway, e: &Entry) -> Value {
    let headers: serde_json::Map<String, Value> = e
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let truncated = e.body_len.is_some_and(|n| n > e.body.len() as u64);
    let mut attrs = json!({
        "at_unix_ms": e.at_ms,
        "method": e.method,
        "path": e.path,
        "query": e.query,
        "headers": headers,
        "body": String::from_utf8_lossy(&e.body),
        "body_length": e.body_len,
        "body_truncated": truncated,
        "endpoint": e.endpoint.as_deref(),
        "outcome": e.outcome.as_str(),
        "status": e.status,
    });
    if e.outcome == Outcome::Unmatched {
        let misses = near_misses(gw, e, truncated);
        attrs["near_misses"] = Value::Array(misses);
    }
    json!({"type": "requests", "id": e.seq.to_string(), "attributes": attrs})
}

/// The nearest misses of a request that nothing answered, against the router
/// being served now.
fn near_misses(gw: &Gateway, e: &Entry, truncated: bool) -> Vec<Value> {
    let mut headers = http::HeaderMap::new();
    for (k, v) in &e.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    let mut facts = Facts::new(e.query.as_deref(), &headers);
    facts.set_body(if truncated {
        Body::TooLarge
    } else {
        Body::Read(e.body.clone())
    });
    let Ok(method) = http::Method::from_bytes(e.method.as_bytes()) else {
        return Vec::new();
    };
    gw.current()
        .explain(&method, &e.path, &facts)
        .into_iter()
        .map(|m| json!({"endpoint": m.endpoint, "reason": m.reason}))
        .collect()
}
