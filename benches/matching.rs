//! The request path's lookup with conditions and templates, in process:
//! - `find/exact_plain`: a plain exact-path hit among 10k endpoints (the
//!   Echo case), as the proxy looks it up (`Router::find` with the request's
//!   facts); compare with `lookup/exact` in the router bench;
//! - `find/three_conditions`: an endpoint with a query, a header and a body
//!   condition, three endpoints on the path with one condition each failing;
//! - `render/template`: rendering a template with a path parameter, a query
//!   value, a header and a JSON body field.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use echo_gateway::config::conditions::{BodyMatch, MatchSpec, ValueMatch};
use echo_gateway::config::{EndpointSpec, PathSpec, ResponseSpec, Verb};
use echo_gateway::router::matcher::{Body, Facts};
use echo_gateway::router::{Layers, Lookup, Router, RuntimeEndpoint};
use echo_gateway::template::{BodyTemplate, RequestView};

fn plain(i: usize) -> EndpointSpec {
    EndpointSpec {
        verb: Verb::Get,
        path: PathSpec::Exact(format!("/api/v1/items/{i}")),
        priority: None,
        conditions: None,
        response: ResponseSpec {
            code: 200,
            body: format!("{{\"item\":{i}}}"),
            ..ResponseSpec::default()
        },
    }
}

fn conditioned(tenant: &str, priority: i64) -> EndpointSpec {
    EndpointSpec {
        verb: Verb::Post,
        path: PathSpec::Template("/api/v1/orders/{id}".into()),
        priority: Some(priority),
        conditions: Some(MatchSpec {
            query: vec![("mode".into(), ValueMatch::Equals("fast".into()))],
            headers: vec![("X-Tenant".into(), ValueMatch::Equals(tenant.into()))],
            cookies: vec![],
            body: vec![BodyMatch::JsonPointer {
                pointer: "/customer/tier".into(),
                equals: serde_json::json!("vip"),
            }],
        }),
        response: ResponseSpec {
            code: 201,
            template: Some(TEMPLATE.into()),
            ..ResponseSpec::default()
        },
    }
}

const TEMPLATE: &str = r#"{"order": "{{ request.params.id }}", "mode": "{{ request.query.mode }}", "tenant": "{{ request.headers["x-tenant"] }}", "name": "{{ request.json.customer.name }}"}"#;

fn router() -> Router {
    let mut specs: Vec<EndpointSpec> = (0..10_000).map(plain).collect();
    specs.push(conditioned("other-1", 9));
    specs.push(conditioned("other-2", 8));
    specs.push(conditioned("acme", 1));
    let runtime = specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| RuntimeEndpoint {
            id: i as u64 + 1,
            spec,
        })
        .collect::<Vec<_>>();
    let layers = Layers {
        files: Arc::new(vec![]),
        runtime: runtime.into(),
    };
    Router::compile(layers, Arc::new(HashMap::new()), None, 1).0
}

fn bench(c: &mut Criterion) {
    let r = router();
    let get = http::Method::GET;
    let post = http::Method::POST;
    let no_headers = http::HeaderMap::new();
    let paths: Vec<String> = (0..1024)
        .map(|i| format!("/api/v1/items/{}", (i * 7919) % 10_000))
        .collect();

    let mut g = c.benchmark_group("find");
    let mut i = 0;
    g.bench_function("exact_plain", |b| {
        b.iter(|| {
            i = (i + 1) % paths.len();
            let facts = Facts::new(None, &no_headers);
            matches!(r.find(&get, black_box(&paths[i]), &facts), Lookup::Hit(..))
        })
    });

    let mut headers = http::HeaderMap::new();
    headers.insert("x-tenant", http::HeaderValue::from_static("acme"));
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    let body =
        Bytes::from_static(br#"{"customer": {"tier": "vip", "name": "Ann"}, "lines": [1, 2, 3]}"#);
    g.bench_function("three_conditions", |b| {
        b.iter(|| {
            let mut facts = Facts::new(Some("mode=fast&page=2"), &headers);
            facts.set_body(Body::Read(body.clone()));
            match r.find(&post, black_box("/api/v1/orders/42"), &facts) {
                Lookup::Hit(e, params) => (e.id.len(), params.len()),
                _ => (0, 0),
            }
        })
    });
    g.finish();

    let t = BodyTemplate::new(TEMPLATE).expect("template");
    let mut view = RequestView {
        method: "POST".into(),
        path: "/api/v1/orders/42".into(),
        ..RequestView::default()
    };
    view.params.insert("id".into(), "42".into());
    view.query.insert("mode".into(), "fast".into());
    view.headers.insert("x-tenant".into(), "acme".into());
    view.json = Some(serde_json::json!({"customer": {"tier": "vip", "name": "Ann"}}));
    c.bench_function("render/template", |b| {
        b.iter(|| t.render(black_box(&view)).map(|s| s.len()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
