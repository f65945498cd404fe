//! The JSON:API error document of echo-api-spec section 3.7.

use bytes::Bytes;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct ErrorObject {
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    pub pointer: Option<String>,
}

impl ErrorObject {
    pub fn new(status: u16, code: &'static str, detail: &str) -> ErrorObject {
        ErrorObject {
            status,
            code,
            detail: detail.to_string(),
            pointer: None,
        }
    }

    pub fn at(mut self, pointer: &str) -> ErrorObject {
        self.pointer = Some(pointer.to_string());
        self
    }

    fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("status".into(), json!(self.status.to_string()));
        o.insert("code".into(), json!(self.code));
        o.insert("title".into(), json!(title(self.code)));
        o.insert("detail".into(), json!(self.detail));
        if let Some(p) = &self.pointer {
            o.insert("source".into(), json!({ "pointer": p }));
        }
        Value::Object(o)
    }
}

fn title(code: &str) -> &'static str {
    match code {
        "bad_request" => "Bad request",
        "unauthorized" => "Unauthorized",
        "client_generated_id" => "Client-generated id",
        "read_only" => "Read-only endpoint",
        "not_found" => "Not found",
        "method_not_allowed" => "Method not allowed",
        "conflict" => "Conflict",
        "payload_too_large" => "Payload too large",
        "unsupported_media_type" => "Unsupported media type",
        "invalid_attribute" => "Invalid attribute",
        "bad_gateway" => "Bad gateway",
        "gateway_timeout" => "Gateway timeout",
        "store_unavailable" => "Store unavailable",
        "endpoint_limit" => "Endpoint limit reached",
        "too_many_requests" => "Too many requests",
        "uri_too_long" => "Request line too long",
        "header_fields_too_large" => "Request header fields too large",
        "request_timeout" => "Request timeout",
        "too_many_connections" => "Too many connections",
        _ => "Internal error",
    }
}

pub fn document(errors: &[ErrorObject]) -> Bytes {
    let list: Vec<Value> = errors.iter().map(ErrorObject::to_json).collect();
    Bytes::from(json!({ "errors": list }).to_string())
}

/// A one-error document.
pub fn error_document(
    status: u16,
    code: &'static str,
    detail: &str,
    pointer: Option<&str>,
) -> Bytes {
    let mut e = ErrorObject::new(status, code, detail);
    if let Some(p) = pointer {
        e = e.at(p);
    }
    document(std::slice::from_ref(&e))
}
