//! Criterion benches of the compiled router, in process (no sockets).
//!
//! - `lookup/{exact,template,mixed}/N`: `Router::lookup` of a request that
//!   hits an endpoint, among N endpoints of one mix. The requests cycle
//!   through `HOT` paths that aim at endpoints picked at random through the
//!   whole table: the same number of requests for every N, a working set
//!   that stays in the CPU's caches, so that the figure is the router's own
//!   work.
//! - `lookup-spread/{exact,template}/N`: the same with `SPREAD` paths. Among
//!   100k endpoints they touch more memory than the caches hold, and the
//!   figure becomes that of the memory: the cost of a cold lookup.
//! - `lookup/mixed-regex/N`: only the requests that hit a `path_regex`
//!   endpoint of the mixed table (1% of the requests of `lookup/mixed`).
//! - `miss/{exact,template,mixed}/N`: a request that matches nothing (404),
//!   with the same first segments as real endpoints so that the tree walk
//!   goes deep before it fails.
//! - `compile/{exact,template}/N`: `Router::compile` of N endpoints (the
//!   old router is dropped outside the timing).
//!
//! Run: `cargo bench --bench router` (see benches/README.md).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode};

use echo_gateway::config::{EndpointSpec, PathSpec, ResponseSpec, Verb};
use echo_gateway::router::{Layers, Router, RuntimeEndpoint};

/// Table sizes of the lookup benches.
const LOOKUP_SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];
/// Table sizes of the compile benches.
const COMPILE_SIZES: [usize; 3] = [1_000, 10_000, 100_000];
/// How many request paths a lookup bench cycles through (powers of two, so
/// that the cycling costs one `&`). The more distinct endpoints a bench
/// touches, the less of a large table stays in cache.
const HOT: usize = 64;
const SPREAD: usize = 4096;

const AREAS: [&str; 8] = [
    "api", "internal", "partner", "admin", "mobile", "public", "billing", "v2",
];
const RESOURCES: [&str; 8] = [
    "users", "orders", "items", "accounts", "invoices", "carts", "products", "sessions",
];
const SUBS: [&str; 6] = [
    "orders",
    "lines",
    "payments",
    "events",
    "notes",
    "attachments",
];

#[derive(Clone, Copy, Debug)]
enum Mix {
    /// Every endpoint an exact path.
    Exact,
    /// Every endpoint a template.
    Template,
    /// 90% exact, 9% templates, 1% `path_regex`.
    Mixed,
}

impl Mix {
    fn name(self) -> &'static str {
        match self {
            Mix::Exact => "exact",
            Mix::Template => "template",
            Mix::Mixed => "mixed",
        }
    }

    /// What kind of path the i-th of n endpoints has. A mixed table of
    /// fewer than 100 endpoints still gets one template and one regex.
    fn kind(self, i: usize, n: usize) -> Kind {
        match self {
            Mix::Exact => Kind::Exact,
            Mix::Template => Kind::Template,
            Mix::Mixed if n < 100 => match n - 1 - i {
                0 => Kind::Regex,
                1 => Kind::Template,
                _ => Kind::Exact,
            },
            Mix::Mixed => match i % 100 {
                0..=89 => Kind::Exact,
                90..=98 => Kind::Template,
                _ => Kind::Regex,
            },
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Exact,
    Template,
    Regex,
}

/// The static words of endpoint `i` besides its service `svc{i}`: an area,
/// a resource and a sub-resource, so that the tree has wide nodes (the
/// areas) above deep ones (the digits of the services).
fn words(i: usize) -> (&'static str, &'static str, &'static str) {
    (
        AREAS[i % AREAS.len()],
        RESOURCES[(i / AREAS.len()) % RESOURCES.len()],
        SUBS[(i / 7) % SUBS.len()],
    )
}

/// The path of endpoint `i` of kind `kind`; every endpoint is distinct.
fn endpoint_path(kind: Kind, i: usize) -> PathSpec {
    let (area, res, sub) = words(i);
    match kind {
        Kind::Exact => PathSpec::Exact(format!("/{area}/svc{i}/{res}/{}/{sub}", i % 997)),
        Kind::Template => {
            // A third of the templates stop after one parameter.
            if i % 3 == 0 {
                PathSpec::Template(format!("/{area}/svc{i}/{res}/{{id}}"))
            } else {
                PathSpec::Template(format!("/{area}/svc{i}/{res}/{{id}}/{sub}/{{sub_id}}"))
            }
        }
        Kind::Regex => PathSpec::Regex(format!("/{area}/re{i}/{res}/[0-9]+(/{sub})?")),
    }
}

/// A request path that endpoint `i` of kind `kind` answers.
fn request_path(kind: Kind, i: usize) -> String {
    let (area, res, sub) = words(i);
    match kind {
        Kind::Exact => format!("/{area}/svc{i}/{res}/{}/{sub}", i % 997),
        Kind::Template if i % 3 == 0 => format!("/{area}/svc{i}/{res}/{}", 10_000 + i),
        Kind::Template => format!("/{area}/svc{i}/{res}/{}/{sub}/ab-{}", 10_000 + i, i % 89),
        Kind::Regex => format!("/{area}/re{i}/{res}/{}/{sub}", 1 + i % 9973),
    }
}

/// A request path near endpoint `i` that no endpoint answers: it shares the
/// first segments with real endpoints and fails late.
fn miss_path(i: usize) -> String {
    let (area, res, _) = words(i);
    format!("/{area}/svc{i}/{res}/{}/no-such-thing/1", 10_000 + i)
}

fn layers(mix: Mix, n: usize) -> Layers {
    let runtime = (0..n)
        .map(|i| RuntimeEndpoint {
            id: i as u64 + 1,
            spec: EndpointSpec {
                verb: Verb::Get,
                path: endpoint_path(mix.kind(i, n), i),
                priority: None,
                conditions: None,
                response: ResponseSpec {
                    code: 200,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: format!("{{\"endpoint\":{i}}}"),
                    ..ResponseSpec::default()
                },
            },
        })
        .collect::<Vec<_>>();
    Layers {
        files: Arc::new(vec![]),
        runtime: runtime.into(),
    }
}

fn compile(layers: Layers) -> Router {
    let (router, errors) = Router::compile(layers, Arc::default(), None, 1);
    assert!(errors.is_empty(), "compile errors: {errors:?}");
    router
}

/// A small deterministic generator (xorshift64*), so that the spread of
/// requests is the same on every run without a `rand` dependency.
struct Spread(u64);

impl Spread {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize % n
    }
}

/// `count` endpoint indices spread through a table of `n`, restricted to
/// endpoints for which `keep` holds.
fn targets(n: usize, count: usize, keep: impl Fn(usize) -> bool) -> Vec<usize> {
    let eligible: Vec<usize> = (0..n).filter(|&i| keep(i)).collect();
    assert!(!eligible.is_empty());
    let mut spread = Spread(0x9E37_79B9_7F4A_7C15 ^ n as u64);
    (0..count)
        .map(|_| eligible[spread.below(eligible.len())])
        .collect()
}

/// Checks that every request gets the answer it should, then times the
/// lookups, cycling through the requests.
fn bench_requests(
    c: &mut Criterion,
    group: &str,
    router: &Router,
    n: usize,
    requests: &[String],
    expected: &[Option<usize>],
) {
    let mask = requests.len() - 1;
    assert!(requests.len().is_power_of_two());
    for (path, want) in requests.iter().zip(expected) {
        let got = router.lookup(Verb::Get, path).map(|e| e.id.to_string());
        let want = want.map(|i| (i + 1).to_string());
        assert_eq!(got, want, "{group}/{n}: lookup of {path}");
    }
    let mut g = c.benchmark_group(group);
    g.bench_with_input(BenchmarkId::from_parameter(n), requests, |b, requests| {
        let mut k = 0usize;
        b.iter(|| {
            let path = &requests[k & mask];
            k = k.wrapping_add(1);
            black_box(router.lookup(Verb::Get, black_box(path.as_str())))
        });
    });
    g.finish();
}

fn lookups(c: &mut Criterion) {
    for mix in [Mix::Exact, Mix::Template, Mix::Mixed] {
        for n in LOOKUP_SIZES {
            let router = compile(layers(mix, n));

            for (count, group) in [(HOT, "lookup"), (SPREAD, "lookup-spread")] {
                if count == SPREAD && matches!(mix, Mix::Mixed) {
                    continue;
                }
                let hits = targets(n, count, |_| true);
                let requests: Vec<String> = hits
                    .iter()
                    .map(|&i| request_path(mix.kind(i, n), i))
                    .collect();
                let expected: Vec<Option<usize>> = hits.iter().map(|&i| Some(i)).collect();
                bench_requests(
                    c,
                    &format!("{group}/{}", mix.name()),
                    &router,
                    n,
                    &requests,
                    &expected,
                );
            }

            if matches!(mix, Mix::Mixed) {
                let hits = targets(n, HOT, |i| mix.kind(i, n) == Kind::Regex);
                let requests: Vec<String> =
                    hits.iter().map(|&i| request_path(Kind::Regex, i)).collect();
                let expected: Vec<Option<usize>> = hits.iter().map(|&i| Some(i)).collect();
                bench_requests(c, "lookup/mixed-regex", &router, n, &requests, &expected);
            }

            let misses = targets(n, HOT, |_| true);
            let requests: Vec<String> = misses.iter().map(|&i| miss_path(i)).collect();
            bench_requests(
                c,
                &format!("miss/{}", mix.name()),
                &router,
                n,
                &requests,
                &vec![None; requests.len()],
            );
        }
    }
}

fn compiles(c: &mut Criterion) {
    for mix in [Mix::Exact, Mix::Template] {
        let mut g = c.benchmark_group(format!("compile/{}", mix.name()));
        for n in COMPILE_SIZES {
            // A compile of 100k endpoints takes a good part of a second:
            // fewer samples of one iteration each keep the run short.
            if n >= 10_000 {
                g.sample_size(10).sampling_mode(SamplingMode::Flat);
            } else {
                g.sample_size(30).sampling_mode(SamplingMode::Auto);
            }
            let input = layers(mix, n);
            g.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
                b.iter_batched(|| input.clone(), compile, BatchSize::LargeInput);
            });
        }
        g.finish();
    }
}

criterion_group!(benches, lookups, compiles);
criterion_main!(benches);
