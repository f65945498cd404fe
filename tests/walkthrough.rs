//! The README's walk-through, step by step, against the real binary.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn create_call_patch_call_delete_call() {
    let gw = Gateway::start();
    let http = client();

    let (status, created) = post(
        &gw,
        &json!({"data": {"type": "endpoints", "attributes": {
        "verb": "GET", "path": "/greeting",
        "response": {"code": 200, "headers": {"Content-Type": "application/json"},
                     "body": "{ \"message\": \"Hello, world\" }"}}}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().expect("id").to_string();

    let r = http.get(gw.url("/greeting")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), "{ \"message\": \"Hello, world\" }");

    let (status, patched) = send(
        &gw,
        reqwest::Method::PATCH,
        &format!("/endpoints/{id}"),
        Some(
            &json!({"data": {"type": "endpoints", "id": id, "attributes": {
            "response": {"code": 201, "body": "patched"}}}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        patched["data"]["attributes"]["response"],
        json!({"code": 201, "headers": {}, "body": "patched"})
    );

    let r = http.get(gw.url("/greeting")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(
        r.headers().get("content-type").is_none(),
        "no Content-Type is invented"
    );
    assert_eq!(r.text().await.unwrap(), "patched");

    let (status, _) = send(
        &gw,
        reqwest::Method::DELETE,
        &format!("/endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);

    let r = http.get(gw.url("/greeting")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], JSONAPI);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "not_found");
    assert_eq!(
        body["errors"][0]["detail"],
        "Requested page `/greeting` does not exist"
    );
}
