//! The status document: what the gateway serves and from where.

use std::time::UNIX_EPOCH;

use serde_json::{json, Value};

use crate::router::Gateway;

pub fn document(gw: &Gateway) -> Value {
    let router = gw.current();
    let reload = gw.reload_status();
    let store = gw.store();
    let at_ms = reload
        .at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    json!({
        "generation": router.generation,
        "endpoints": {
            "files": router.layers.files.len(),
            "runtime": router.layers.runtime.len(),
        },
        "config": {
            "files": reload.files,
            "digest": reload.digest,
            "last_reload": {
                "ok": reload.ok,
                "at_unix_ms": at_ms,
                "errors": reload.errors,
            },
        },
        "store": {
            "kind": store.kind(),
            "healthy": store.healthy(),
            "revision": store.revision(),
        },
    })
}
