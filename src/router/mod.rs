//! The compiled router: an immutable snapshot of both endpoint layers, built
//! once per change and read without locks on the request path.
//!
//! Precedence (echo-api-spec section 7): for the request's method, an exact
//! path beats a template, a template beats a regex; among templates the
//! tree's own order applies (a static segment beats `{param}`, which beats
//! `{*rest}`); among endpoints on the same route, the higher `priority`, then
//! the older endpoint (file endpoints are older than runtime ones). A runtime
//! endpoint shadows the file endpoint with the same verb and route.

mod canned;
mod holder;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use crate::config::endpoint::{compile_path_regex, RouteKey};
use crate::config::{EndpointSpec, FileEndpoint, PathSpec, Upstream, Verb};

pub use canned::Canned;
pub use holder::{Gateway, WriteError};

/// An endpoint created through the admin API (the runtime layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEndpoint {
    pub id: u64,
    pub spec: EndpointSpec,
}

/// What a matched endpoint does.
// Endpoints live behind an `Arc`: the canned response is kept inline so that
// a hit reads it without another pointer.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Action {
    Respond(Canned),
    Proxy(Arc<Upstream>),
}

/// An endpoint as the request path sees it.
#[derive(Debug)]
pub struct Endpoint {
    pub id: Arc<str>,
    pub action: Action,
}

#[derive(Default)]
struct MethodTable {
    exact: HashMap<Box<str>, Arc<Endpoint>>,
    /// Templates in trees: a template goes into the first tree it does not
    /// conflict with, so `/a/{x}` and `/a/{*rest}` can both be served; trees
    /// are searched in order, and catch-alls are placed last.
    templates: Vec<matchit::Router<Arc<Endpoint>>>,
    regexes: Vec<(regex::Regex, Arc<Endpoint>)>,
}

/// Both layers as they were compiled: what `GET /endpoints` lists.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    pub files: Arc<Vec<FileEndpoint>>,
    /// In creation order.
    pub runtime: Arc<Vec<RuntimeEndpoint>>,
}

/// A compile error: which endpoint, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub id: String,
    pub message: String,
}

pub struct Router {
    tables: [MethodTable; 8],
    pub layers: Layers,
    pub fallback: Option<Arc<Upstream>>,
    pub upstreams: Arc<HashMap<String, Arc<Upstream>>>,
    pub generation: u64,
}

/// One endpoint before it is placed: where it came from and its rank.
struct Entry<'a> {
    id: String,
    spec: &'a EndpointSpec,
    /// Position in age order: file endpoints first, then runtime by creation.
    age: usize,
}

impl Router {
    /// Compiles both layers. A runtime endpoint shadows a file endpoint with
    /// the same verb and route. An endpoint that cannot be placed is left out
    /// and returned with the reason, so that one bad endpoint never stops the
    /// others from being served.
    pub fn compile(
        layers: Layers,
        upstreams: Arc<HashMap<String, Arc<Upstream>>>,
        fallback: Option<Arc<Upstream>>,
        generation: u64,
    ) -> (Router, Vec<CompileError>) {
        let runtime_keys: HashSet<(Verb, RouteKey)> = layers
            .runtime
            .iter()
            .map(|e| (e.spec.verb, e.spec.path.route_key()))
            .collect();
        let mut entries: Vec<Entry<'_>> =
            Vec::with_capacity(layers.files.len() + layers.runtime.len());
        for f in layers.files.iter() {
            if !runtime_keys.contains(&(f.spec.verb, f.spec.path.route_key())) {
                entries.push(Entry {
                    id: f.id.clone(),
                    spec: &f.spec,
                    age: entries.len(),
                });
            }
        }
        for r in layers.runtime.iter() {
            entries.push(Entry {
                id: r.id.to_string(),
                spec: &r.spec,
                age: entries.len(),
            });
        }
        // Higher priority first, then older: the first entry of a route wins.
        // Templates with a catch-all go after the others, into later trees.
        entries.sort_by_key(|e| {
            let catch_all = matches!(&e.spec.path, PathSpec::Template(t) if t.contains("{*"));
            (catch_all, std::cmp::Reverse(e.spec.priority()), e.age)
        });

        let mut errors = Vec::new();
        let mut tables: [MethodTable; 8] = Default::default();
        for e in entries {
            let action = match &e.spec.response.proxy {
                Some(name) => match upstreams.get(name) {
                    Some(u) => Action::Proxy(u.clone()),
                    None => {
                        errors.push(CompileError {
                            id: e.id.clone(),
                            message: format!("response.proxy names an unknown upstream `{name}`"),
                        });
                        continue;
                    }
                },
                None => Action::Respond(Canned::new(&e.spec.response)),
            };
            let endpoint = Arc::new(Endpoint {
                id: Arc::from(e.id.as_str()),
                action,
            });
            let table = &mut tables[e.spec.verb.index()];
            match &e.spec.path {
                PathSpec::Exact(p) => {
                    table.exact.entry(p.as_str().into()).or_insert(endpoint);
                }
                PathSpec::Template(t) => {
                    let shape = crate::config::endpoint::normalize_template(t);
                    insert_template(&mut table.templates, shape, endpoint);
                }
                PathSpec::Regex(r) => match compile_path_regex(r) {
                    Ok(re) => table.regexes.push((re, endpoint)),
                    Err(err) => errors.push(CompileError {
                        id: e.id.clone(),
                        message: format!("path_regex does not compile: {err}"),
                    }),
                },
            }
        }
        let router = Router {
            tables,
            layers,
            fallback,
            upstreams,
            generation,
        };
        (router, errors)
    }

    /// The endpoint that answers `verb` on `path` (the path without query).
    #[inline]
    pub fn lookup(&self, verb: Verb, path: &str) -> Option<&Endpoint> {
        let table = &self.tables[verb.index()];
        if let Some(e) = table.exact.get(path) {
            return Some(e);
        }
        for tree in &table.templates {
            if let Ok(m) = tree.at(path) {
                return Some(m.value);
            }
        }
        table
            .regexes
            .iter()
            .find(|(re, _)| re.is_match(path))
            .map(|(_, e)| &**e)
    }

    /// Like `lookup`, for any request method (unknown methods match nothing).
    #[inline]
    pub fn lookup_method(&self, method: &http::Method, path: &str) -> Option<&Endpoint> {
        self.lookup(Verb::from_method(method)?, path)
    }

    pub fn endpoint_count(&self) -> usize {
        self.tables
            .iter()
            .map(|t| t.exact.len() + t.regexes.len())
            .sum::<usize>()
    }
}

/// Puts a template into the first tree that takes it. A tree that already
/// has the same shape holds a higher-ranked endpoint: this one is shadowed.
fn insert_template(
    trees: &mut Vec<matchit::Router<Arc<Endpoint>>>,
    shape: String,
    endpoint: Arc<Endpoint>,
) {
    for tree in trees.iter_mut() {
        match tree.insert(shape.clone(), endpoint.clone()) {
            Ok(()) => return,
            Err(matchit::InsertError::Conflict { with }) if with == shape => return,
            Err(_) => continue,
        }
    }
    let mut tree = matchit::Router::new();
    if tree.insert(shape, endpoint).is_ok() {
        trees.push(tree);
    }
}

/// The body of the Echo 404 for a path (spec 3.7, A26).
pub fn not_found_body(path: &str) -> Bytes {
    crate::admin::error_document(
        404,
        "not_found",
        &format!("Requested page `{path}` does not exist"),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ResponseSpec;

    fn spec(verb: Verb, path: PathSpec, priority: Option<i64>, body: &str) -> EndpointSpec {
        EndpointSpec {
            verb,
            path,
            priority,
            response: ResponseSpec {
                code: 200,
                headers: vec![],
                body: body.into(),
                proxy: None,
            },
        }
    }

    fn runtime(list: Vec<EndpointSpec>) -> Layers {
        Layers {
            files: Arc::new(vec![]),
            runtime: Arc::new(
                list.into_iter()
                    .enumerate()
                    .map(|(i, spec)| RuntimeEndpoint {
                        id: i as u64 + 1,
                        spec,
                    })
                    .collect(),
            ),
        }
    }

    fn compile(layers: Layers) -> Router {
        let (r, errs) = Router::compile(layers, Arc::default(), None, 1);
        assert!(errs.is_empty(), "{errs:?}");
        r
    }

    fn hit(r: &Router, verb: Verb, path: &str) -> Option<String> {
        r.lookup(verb, path).map(|e| e.id.to_string())
    }

    #[test]
    fn exact_beats_template_beats_regex() {
        let r = compile(runtime(vec![
            spec(Verb::Get, PathSpec::Regex("/u/.*".into()), Some(100), "re"),
            spec(Verb::Get, PathSpec::Template("/u/{id}".into()), None, "tpl"),
            spec(Verb::Get, PathSpec::Exact("/u/me".into()), None, "exact"),
            spec(
                Verb::Get,
                PathSpec::Template("/u/{id}/{*rest}".into()),
                None,
                "rest",
            ),
        ]));
        assert_eq!(hit(&r, Verb::Get, "/u/me").as_deref(), Some("3"));
        assert_eq!(hit(&r, Verb::Get, "/u/42").as_deref(), Some("2"));
        assert_eq!(hit(&r, Verb::Get, "/u/42/a/b").as_deref(), Some("4"));
        assert_eq!(hit(&r, Verb::Get, "/u/").as_deref(), Some("1"));
        assert_eq!(hit(&r, Verb::Post, "/u/me"), None);
        assert_eq!(hit(&r, Verb::Get, "/x"), None);
    }

    #[test]
    fn priority_then_age_decide_on_one_route() {
        let r = compile(runtime(vec![
            spec(Verb::Get, PathSpec::Template("/a/{x}".into()), None, "old"),
            spec(
                Verb::Get,
                PathSpec::Template("/a/{y}".into()),
                Some(5),
                "high",
            ),
            spec(Verb::Get, PathSpec::Regex("/b/.*".into()), None, "old-re"),
            spec(
                Verb::Get,
                PathSpec::Regex("/b/1".into()),
                Some(1),
                "high-re",
            ),
            spec(Verb::Get, PathSpec::Regex("/c/.*".into()), None, "first"),
            spec(Verb::Get, PathSpec::Regex("/c/1".into()), None, "second"),
        ]));
        assert_eq!(hit(&r, Verb::Get, "/a/1").as_deref(), Some("2"));
        assert_eq!(hit(&r, Verb::Get, "/b/1").as_deref(), Some("4"));
        assert_eq!(hit(&r, Verb::Get, "/b/2").as_deref(), Some("3"));
        assert_eq!(hit(&r, Verb::Get, "/c/1").as_deref(), Some("5"));
    }

    #[test]
    fn runtime_shadows_file_endpoint() {
        let files = vec![
            FileEndpoint {
                id: "f-1".into(),
                spec: spec(Verb::Get, PathSpec::Exact("/a".into()), Some(9), "file"),
                source: "x.toml".into(),
            },
            FileEndpoint {
                id: "f-2".into(),
                spec: spec(Verb::Get, PathSpec::Exact("/b".into()), None, "file"),
                source: "x.toml".into(),
            },
        ];
        let mut layers = runtime(vec![spec(
            Verb::Get,
            PathSpec::Exact("/a".into()),
            None,
            "rt",
        )]);
        layers.files = Arc::new(files);
        let r = compile(layers);
        assert_eq!(hit(&r, Verb::Get, "/a").as_deref(), Some("1"));
        assert_eq!(hit(&r, Verb::Get, "/b").as_deref(), Some("f-2"));
    }

    #[test]
    fn matching_is_byte_exact() {
        let r = compile(runtime(vec![spec(
            Verb::Get,
            PathSpec::Exact("/a%20b".into()),
            None,
            "",
        )]));
        assert!(hit(&r, Verb::Get, "/a%20b").is_some());
        assert!(hit(&r, Verb::Get, "/a b").is_none());
        assert!(hit(&r, Verb::Get, "/A%20b").is_none());
        assert!(hit(&r, Verb::Get, "/a%20b/").is_none());
    }

    #[test]
    fn overlapping_templates_are_all_served() {
        let r = compile(runtime(vec![
            spec(Verb::Get, PathSpec::Template("/a/{*rest}".into()), None, ""),
            spec(Verb::Get, PathSpec::Template("/a/{x}".into()), None, ""),
            spec(
                Verb::Get,
                PathSpec::Template("/a/{x}/{*rest}".into()),
                None,
                "",
            ),
            spec(
                Verb::Get,
                PathSpec::Template("/b/x{n}.png".into()),
                None,
                "",
            ),
            spec(Verb::Get, PathSpec::Template("/b/{m}".into()), None, ""),
        ]));
        assert_eq!(hit(&r, Verb::Get, "/a/1").as_deref(), Some("2"));
        assert_eq!(hit(&r, Verb::Get, "/a/1/2").as_deref(), Some("3"));
        assert_eq!(hit(&r, Verb::Get, "/b/x1.png").as_deref(), Some("4"));
        assert_eq!(hit(&r, Verb::Get, "/b/y").as_deref(), Some("5"));
    }
}
