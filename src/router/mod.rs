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
mod explain;
mod holder;
mod layer;
pub mod matcher;
mod table;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::endpoint::{compile_path_regex, Delay, Fault};
use crate::config::{EndpointSpec, FileEndpoint, PathSpec, Upstream, Verb};
use crate::template::BodyTemplate;
use matcher::{Body, Conditions, Facts};

pub use canned::{wire, Canned};
pub use explain::NearMiss;
pub(crate) use holder::upstream_table;
pub use holder::{Gateway, WriteError};
pub use layer::RuntimeLayer;

/// An endpoint created through the admin API (the runtime layer).
#[derive(Debug, Clone, PartialEq)]
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
    /// Conditions beyond verb and path; `None` accepts every request.
    /// (Boxed, as the template: most endpoints have neither, and an
    /// endpoint among 100k stays small.)
    pub conditions: Option<Box<Conditions>>,
    /// Renders the body per request instead of the canned one.
    pub template: Option<Box<BodyTemplate>>,
    /// The template's parameter names, in path order.
    pub param_names: Vec<String>,
    pub delay: Option<Delay>,
    pub fault: Option<Fault>,
    /// `response.rate_limit`: 429 beyond it.
    pub rate: Option<Box<crate::limits::EndpointRate>>,
    /// Requests this endpoint answered.
    pub hits: Arc<AtomicU64>,
}

/// Whether an endpoint answers a request.
enum Accept {
    Yes,
    No,
    /// Only the request body can tell.
    NeedBody,
}

impl Endpoint {
    /// Whether more of the request than method and path decides if this
    /// endpoint answers it (conditions, or a template that reads the body).
    fn reads_request(&self) -> bool {
        self.conditions.is_some()
            || self
                .template
                .as_deref()
                .is_some_and(BodyTemplate::reads_body)
    }

    /// Whether the endpoint answers; `NeedBody` when its body conditions, or
    /// a template that renders the body, need the request body read first.
    #[inline]
    fn accepts(&self, facts: &Facts<'_>) -> Accept {
        if let Some(c) = &self.conditions {
            if c.check_head(facts).is_err() {
                return Accept::No;
            }
        }
        let body_conditions = self
            .conditions
            .as_deref()
            .is_some_and(Conditions::needs_body);
        let renders_body = self
            .template
            .as_deref()
            .is_some_and(BodyTemplate::reads_body);
        if !body_conditions && !renders_body {
            return Accept::Yes;
        }
        if matches!(facts.body, Body::Unread) {
            return Accept::NeedBody;
        }
        match &self.conditions {
            Some(c) if c.check_body(facts).is_err() => Accept::No,
            _ => Accept::Yes,
        }
    }
}

/// Endpoints on one route, best first (priority, then age). The first is
/// kept inline: a plain route has one endpoint, reached in one step.
#[derive(Clone)]
struct Group {
    first: Arc<Endpoint>,
    /// `None` for a plain route, which keeps the table's entries small.
    rest: Option<Arc<Vec<Arc<Endpoint>>>>,
    /// One endpoint that answers every request on the route: a hit without
    /// reading the endpoint.
    plain: bool,
}

impl Group {
    /// `None` for an empty list.
    fn new(mut list: Vec<Arc<Endpoint>>) -> Option<Group> {
        if list.is_empty() {
            return None;
        }
        let first = list.remove(0);
        let rest = (!list.is_empty()).then(|| Arc::new(list));
        let plain = rest.is_none()
            && first.conditions.is_none()
            && !first
                .template
                .as_deref()
                .is_some_and(BodyTemplate::reads_body);
        Some(Group { first, rest, plain })
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        std::iter::once(&self.first).chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    fn len(&self) -> usize {
        1 + self.rest.as_ref().map_or(0, |r| r.len())
    }
}

/// What method and path alone tell of a request (`Router::find_by_path`).
pub enum ByPath<'r> {
    /// This endpoint answers, whatever the rest of the request holds.
    Hit(&'r Endpoint),
    /// No endpoint answers, whatever the rest of the request holds.
    Miss,
    /// The rest of the request could change the answer: `find` tells.
    Unsure,
}

/// The result of looking a request up.
pub enum Lookup<'r> {
    /// This endpoint answers; with the template parameters (named) when the
    /// endpoint renders a template.
    Hit(&'r Endpoint, Vec<(String, String)>),
    /// An endpoint's body conditions must be checked: read the body, look again.
    NeedBody,
    Miss,
}

enum Pick<'r> {
    Hit(&'r Endpoint),
    NeedBody,
    None,
}

#[inline]
fn pick<'r>(group: &'r Group, facts: &Facts<'_>) -> Pick<'r> {
    if group.plain {
        return Pick::Hit(&group.first);
    }
    if group.rest.is_none() {
        return pick_one(&group.first, facts);
    }
    for e in group.iter() {
        match e.accepts(facts) {
            Accept::Yes => return Pick::Hit(e),
            Accept::NeedBody => return Pick::NeedBody,
            Accept::No => {}
        }
    }
    Pick::None
}

#[inline]
fn pick_one<'r>(e: &'r Endpoint, facts: &Facts<'_>) -> Pick<'r> {
    match e.accepts(facts) {
        Accept::Yes => Pick::Hit(e),
        Accept::NeedBody => Pick::NeedBody,
        Accept::No => Pick::None,
    }
}

#[derive(Default)]
struct MethodTable {
    /// foldhash: configured keys, so no flooding to guard against, and a
    /// hash of a path in a few nanoseconds.
    exact: table::PathTable<Group>,
    templates: Templates,
    regexes: Vec<(regex::Regex, Arc<Endpoint>)>,
    /// All of `regexes` in one automaton, from `REGEX_SET_FROM` of them:
    /// one pass over the path tells which match, instead of one per regex.
    regex_set: Option<regex::RegexSet>,
}

/// From this many `path_regex` endpoints of a method on, a request is
/// matched against all of them at once.
const REGEX_SET_FROM: usize = 8;
/// The compiled size a set may take; past it, the regexes are tried one by one.
const REGEX_SET_SIZE_LIMIT: usize = 256 << 20;

impl MethodTable {
    /// The `path_regex` endpoints whose regex matches `path`, in rank order.
    #[inline]
    fn regex_hits<'a, 'p>(
        &'a self,
        path: &'p str,
    ) -> impl Iterator<Item = &'a Arc<Endpoint>> + use<'a, 'p> {
        let (set, each) = match &self.regex_set {
            Some(set) => (Some(set.matches(path)), None),
            None => (None, Some(&self.regexes)),
        };
        let from_set = set
            .into_iter()
            .flat_map(|m| m.into_iter())
            .filter_map(|i| self.regexes.get(i).map(|(_, e)| e));
        let one_by_one = each
            .into_iter()
            .flatten()
            .filter(move |(re, _)| re.is_match(path))
            .map(|(_, e)| e);
        from_set.chain(one_by_one)
    }
}

/// Templates in trees: a template goes into the first tree it does not
/// conflict with, so `/a/{x}` and `/a/{*rest}` can both be served; trees
/// are searched in order, and catch-alls are placed last.
///
/// A large table is cut into small trees, one per bucket, so that a lookup
/// hashes once and then walks a shallow tree instead of a tree of every
/// template: one deep radix tree costs a cache miss per level. A template's
/// head is its whole static segments before the first parameter (`/api/u/`
/// for `/api/u/{id}`); templates whose head has at least `key_slashes`
/// slashes go into the bucket of the head's first `key_slashes` slashes,
/// the others into `rest`. Where a bucket template and a `rest` template
/// both match a path, the bucket one has a static segment where the other
/// has a parameter, and wins in one tree too: searching the bucket before
/// `rest` keeps the tree's order. Conflicting templates are in different
/// trees, searched one after the other, an order that buckets would not
/// keep: a table with conflicting templates is not cut into buckets.
#[derive(Default)]
struct Templates {
    /// 0: no buckets, every template is in `rest`.
    key_slashes: usize,
    buckets: table::PathTable<Bucket>,
    rest: Vec<matchit::Router<Group>>,
    /// Templates served (shadowed ones are not).
    len: usize,
    /// Every template in rank order, kept when the endpoints of some route
    /// all have conditions, or when some templates conflict. When a route
    /// turns a request away, its tree hides the less specific routes that
    /// match it; when routes of several trees match, the trees cannot tell
    /// which is the most specific. Both are settled here.
    all: Vec<(String, Group)>,
}

/// The templates under one bucket key.
enum Bucket {
    /// A single template, the common case in a large table: its shape after
    /// the key is the table entry's tail, matched in place.
    One(Group),
    /// A boxed slice: the common case above stays one cache line.
    Trees(Box<[matchit::Router<Group>]>),
}

/// Below this many templates for one verb, one set of trees is as fast.
const TEMPLATE_BUCKETS_FROM: usize = 64;
/// The deepest bucket key considered, in slashes.
const MAX_KEY_SLASHES: usize = 8;

impl Templates {
    /// Builds the trees from templates (shapes) in rank order.
    fn build(list: &[(String, Group)]) -> Templates {
        let key_slashes = if list.len() < TEMPLATE_BUCKETS_FROM {
            0
        } else {
            best_key_slashes(list)
        };
        Templates::build_with(list, key_slashes)
    }

    /// Buckets on `key_slashes` slashes, unless some templates conflict.
    fn build_with(list: &[(String, Group)], key_slashes: usize) -> Templates {
        let (mut t, mut conflicts) = Templates::build_keyed(list, key_slashes);
        if key_slashes > 0 && conflicts {
            (t, conflicts) = Templates::build_keyed(list, 0);
        }
        let can_refuse = |g: &Group| g.iter().all(|e| e.conditions.is_some());
        if conflicts || list.iter().any(|(_, g)| can_refuse(g)) {
            t.all = list.to_vec();
        }
        t
    }

    /// The templates cut into buckets, and whether some of them conflict
    /// (need more than one tree).
    fn build_keyed(list: &[(String, Group)], key_slashes: usize) -> (Templates, bool) {
        let mut t = Templates {
            key_slashes,
            ..Templates::default()
        };
        let mut keyed: HashMap<&str, Vec<&(String, Group)>> = HashMap::new();
        for item in list {
            let (shape, endpoint) = item;
            match bucket_key(head(shape), key_slashes) {
                Some(key) => keyed.entry(key).or_default().push(item),
                None => {
                    if insert_template(&mut t.rest, shape, endpoint) {
                        t.len += 1;
                    }
                }
            }
        }
        let mut conflicts = t.rest.len() > 1;
        let mut buckets = Vec::with_capacity(keyed.len());
        for (key, items) in keyed {
            if let [(shape, group)] = items.as_slice() {
                t.len += 1;
                let tail = shape.get(key.len()..).unwrap_or_default();
                buckets.push((key, tail, Bucket::One(group.clone())));
                continue;
            }
            let mut trees = Vec::new();
            for (shape, group) in items {
                if insert_template(&mut trees, shape, group) {
                    t.len += 1;
                }
            }
            conflicts |= trees.len() > 1;
            buckets.push((key, "", Bucket::Trees(trees.into_boxed_slice())));
        }
        t.buckets = table::PathTable::build(buckets.into_iter());
        (t, conflicts)
    }

    /// Every route of every tree that matches `path` (for explanations).
    fn all_matches<'a>(&'a self, path: &str) -> Vec<&'a Group> {
        let mut out = Vec::new();
        if let Some(key) = bucket_key(path, self.key_slashes) {
            match self.buckets.get(key) {
                Some((Bucket::One(g), tail))
                    if shape_matches(tail, path.get(key.len()..).unwrap_or_default(), |_| ()) =>
                {
                    out.push(g);
                }
                Some((Bucket::Trees(trees), _)) => {
                    out.extend(
                        trees
                            .iter()
                            .filter_map(|tree| tree.at(path).ok().map(|m| m.value)),
                    );
                }
                Some((Bucket::One(_), _)) | None => {}
            }
        }
        out.extend(
            self.rest
                .iter()
                .filter_map(|tree| tree.at(path).ok().map(|m| m.value)),
        );
        out
    }

    /// The first endpoint that accepts the request: in the request's
    /// bucket, then in the trees of the rest.
    #[inline]
    fn find<'a>(&'a self, path: &str, facts: &Facts<'_>) -> Lookup<'a> {
        let in_bucket = match bucket_key(path, self.key_slashes) {
            Some(key) => match self.buckets.get(key) {
                Some((Bucket::One(group), tail)) => one_match(
                    group,
                    tail,
                    path.get(key.len()..).unwrap_or_default(),
                    facts,
                ),
                Some((Bucket::Trees(trees), _)) => first_match(trees, path, facts),
                None => TreeMatch::Miss,
            },
            None => TreeMatch::Miss,
        };
        let found = match in_bucket {
            TreeMatch::Miss => first_match(&self.rest, path, facts),
            other => other,
        };
        match found {
            TreeMatch::Found(found) => found,
            TreeMatch::Unsettled => self.find_in_all(path, facts),
            TreeMatch::Miss => Lookup::Miss,
        }
    }

    /// Every template that matches `path`, the most specific first, until
    /// one of them accepts the request. Only when the trees cannot settle
    /// it: after a route whose conditions all failed, or when routes of
    /// several trees matched.
    #[cold]
    fn find_in_all<'a>(&'a self, path: &str, facts: &Facts<'_>) -> Lookup<'a> {
        let mut candidates: Vec<(&str, &Group, Vec<&str>)> = self
            .all
            .iter()
            .filter_map(|(shape, g)| Some((shape.as_str(), g, match_shape(shape, path)?)))
            .collect();
        // Stable: among equally specific routes, rank order stays.
        candidates.sort_by(|a, b| specificity(a.0, b.0));
        for (_, group, values) in candidates {
            match pick(group, facts) {
                Pick::Hit(e) => {
                    let params = named_params(e, values.into_iter());
                    return Lookup::Hit(e, params);
                }
                Pick::NeedBody => return Lookup::NeedBody,
                Pick::None => {}
            }
        }
        Lookup::Miss
    }
}

/// A bucket's single template (`shape`, after the bucket key) against the
/// request path after the same key.
#[inline]
fn one_match<'a>(group: &'a Group, shape: &[u8], path: &str, facts: &Facts<'_>) -> TreeMatch<'a> {
    if !shape_matches(shape, path, |_| ()) {
        return TreeMatch::Miss;
    }
    match pick(group, facts) {
        Pick::Hit(e) => {
            let mut values = Vec::new();
            if e.template.is_some() {
                shape_matches(shape, path, |v| values.push(v));
            }
            TreeMatch::Found(Lookup::Hit(e, named_params(e, values.into_iter())))
        }
        Pick::NeedBody => TreeMatch::Found(Lookup::NeedBody),
        Pick::None => TreeMatch::Unsettled,
    }
}

/// What one set of trees says about a request.
enum TreeMatch<'a> {
    Found(Lookup<'a>),
    /// A route matched and all its endpoints turned the request away, or
    /// routes of several trees matched: every template must be searched.
    Unsettled,
    Miss,
}

#[inline]
fn first_match<'a>(
    trees: &'a [matchit::Router<Group>],
    path: &str,
    facts: &Facts<'_>,
) -> TreeMatch<'a> {
    let mut matches = trees.iter().filter_map(|tree| tree.at(path).ok());
    let Some(m) = matches.next() else {
        return TreeMatch::Miss;
    };
    // Conflicting templates, in later trees, may be more specific.
    if matches.next().is_some() {
        return TreeMatch::Unsettled;
    }
    match pick(m.value, facts) {
        Pick::Hit(e) => {
            let params = named_params(e, m.params.iter().map(|(_, v)| v));
            TreeMatch::Found(Lookup::Hit(e, params))
        }
        Pick::NeedBody => TreeMatch::Found(Lookup::NeedBody),
        Pick::None => TreeMatch::Unsettled,
    }
}

/// The template parameters of a hit, named, when the endpoint renders a template.
fn named_params<'v>(e: &Endpoint, values: impl Iterator<Item = &'v str>) -> Vec<(String, String)> {
    if e.template.is_none() {
        return Vec::new();
    }
    e.param_names
        .iter()
        .zip(values)
        .map(|(name, value)| (name.clone(), value.to_string()))
        .collect()
}

/// The parameter values if the template `shape` matches `path` as the tree
/// would: `{p}` takes a non-empty part of one segment (between its static
/// prefix and suffix), a final `{*p}` the non-empty rest of the path.
fn match_shape<'p>(shape: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut values = Vec::new();
    shape_matches(shape.as_bytes(), path, |v| values.push(v)).then_some(values)
}

/// Whether `path` matches the template `shape`, as a one-route tree would;
/// hands each parameter's value to `value`, in order. One pass over both:
/// static bytes compare one by one; `{name}` takes the bytes up to the
/// segment's end less the static suffix that follows it in the shape, at
/// least one; `{*name}` takes the rest, at least one byte.
#[inline]
fn shape_matches<'p>(shape: &[u8], path: &'p str, mut value: impl FnMut(&'p str)) -> bool {
    let p = path.as_bytes();
    let (mut i, mut j) = (0, 0);
    while i < shape.len() {
        if shape[i] != b'{' {
            if p.get(j) != Some(&shape[i]) {
                return false;
            }
            i += 1;
            j += 1;
            continue;
        }
        let Some(close) = shape[i..].iter().position(|&b| b == b'}') else {
            return false;
        };
        if shape.get(i + 1) == Some(&b'*') {
            return match path.get(j..) {
                Some(rest) if !rest.is_empty() => {
                    value(rest);
                    true
                }
                _ => false,
            };
        }
        i += close + 1;
        let shape_end = segment_end(shape, i);
        let suffix = &shape[i..shape_end];
        let path_end = segment_end(p, j);
        let here = &p[j..path_end];
        if here.len() <= suffix.len() || !here.ends_with(suffix) {
            return false;
        }
        match path.get(j..path_end - suffix.len()) {
            Some(v) => value(v),
            None => return false,
        }
        (i, j) = (shape_end, path_end);
    }
    j == p.len()
}

/// The index of the first `/` at or after `from`, or the length.
#[inline]
fn segment_end(s: &[u8], from: usize) -> usize {
    s[from..]
        .iter()
        .position(|&b| b == b'/')
        .map_or(s.len(), |k| from + k)
}

/// Which of two templates that match one path is the more specific, as the
/// tree ranks them: at their first difference, a static character beats the
/// end of the template, which beats `{param}`, which beats `{*rest}`.
fn specificity(a: &str, b: &str) -> std::cmp::Ordering {
    fn rank(s: &[u8], i: usize) -> u8 {
        let after_brace = i > 0 && s.get(i - 1) == Some(&b'{');
        match s.get(i) {
            None => 1,
            Some(b'*') if after_brace => 3,
            Some(b'{') if s.get(i + 1) == Some(&b'*') => 3,
            Some(b'{') => 2,
            Some(_) if after_brace => 2,
            Some(_) => 0,
        }
    }
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let i = x.iter().zip(y).take_while(|(p, q)| p == q).count();
    rank(x, i).cmp(&rank(y, i))
}

/// A template's whole static segments before its first parameter.
fn head(shape: &str) -> &str {
    let brace = shape.find('{').unwrap_or(shape.len());
    shape[..brace]
        .rfind('/')
        .map_or("", |slash| &shape[..=slash])
}

/// `s` up to and including its `slashes`-th `/`; `None` if it has fewer, or
/// if `slashes` is 0.
#[inline]
fn bucket_key(s: &str, slashes: usize) -> Option<&str> {
    if slashes == 0 {
        return None;
    }
    let (end, _) = s
        .bytes()
        .enumerate()
        .filter(|&(_, b)| b == b'/')
        .nth(slashes - 1)?;
    s.get(..=end)
}

/// The bucket key length that leaves the smallest trees: the fewest
/// templates in the largest bucket plus those left in `rest`; 0 when no
/// key does better than one set of trees.
fn best_key_slashes(list: &[(String, Group)]) -> usize {
    let heads: Vec<&str> = list.iter().map(|(shape, _)| head(shape)).collect();
    let deepest = heads.iter().map(|h| h.matches('/').count()).max();
    let mut best = (list.len(), 0);
    for slashes in 1..=deepest.unwrap_or(0).min(MAX_KEY_SLASHES) {
        if best.0 <= 1 {
            break;
        }
        let mut sizes: HashMap<&str, usize> = HashMap::with_capacity(heads.len());
        let mut rest = 0;
        for h in &heads {
            match bucket_key(h, slashes) {
                Some(key) => *sizes.entry(key).or_default() += 1,
                None => rest += 1,
            }
        }
        let cost = sizes.values().max().copied().unwrap_or(0) + rest;
        if cost < best.0 {
            best = (cost, slashes);
        }
    }
    best.1
}

/// Both layers as they were compiled: what `GET /endpoints` lists.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    pub files: Arc<Vec<FileEndpoint>>,
    /// In creation order.
    pub runtime: RuntimeLayer,
}

impl Layers {
    /// These file endpoints, and runtime endpoints with ids 1, 2, … in order.
    pub fn numbered(files: Vec<FileEndpoint>, runtime: Vec<EndpointSpec>) -> Layers {
        Layers {
            files: Arc::new(files),
            runtime: runtime
                .into_iter()
                .enumerate()
                .map(|(i, spec)| RuntimeEndpoint {
                    id: i as u64 + 1,
                    spec,
                })
                .collect::<Vec<_>>()
                .into(),
        }
    }
}

/// A compile error: which endpoint, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub id: String,
    pub message: String,
}

pub struct Router {
    /// One per verb, `ANY` last: the file endpoints and the runtime layer's
    /// compiled chunks. Shared by the routers that only add to the delta.
    tables: Arc<[MethodTable; 9]>,
    /// The runtime layer's added endpoints.
    delta: Delta,
    /// No endpoint has conditions or a template that reads the body: which
    /// endpoint answers depends on the method and path alone.
    by_path_alone: bool,
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
        Router::compile_counted(
            layers,
            upstreams,
            fallback,
            generation,
            &HitCounters::default(),
        )
    }

    /// `compile`, with the hit counters that outlive each router.
    pub fn compile_counted(
        mut layers: Layers,
        upstreams: Arc<HashMap<String, Arc<Upstream>>>,
        fallback: Option<Arc<Upstream>>,
        generation: u64,
        hits: &HitCounters,
    ) -> (Router, Vec<CompileError>) {
        layers.runtime = layers.runtime.settled();
        let runtime_keys: HashSet<String> = layers
            .runtime
            .iter()
            .map(|e| e.spec.conflict_key())
            .collect();
        let mut entries: Vec<Entry<'_>> =
            Vec::with_capacity(layers.files.len() + layers.runtime.len());
        for f in layers.files.iter() {
            if !runtime_keys.contains(&f.spec.conflict_key()) {
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
        // Higher priority first, then older: the order in which a route's
        // endpoints are tried. Templates with a catch-all go after the others,
        // into later trees.
        entries.sort_by_key(|e| {
            let catch_all = matches!(&e.spec.path, PathSpec::Template(t) if t.contains("{*"));
            (catch_all, std::cmp::Reverse(e.spec.priority()), e.age)
        });

        let mut errors = Vec::new();
        let mut exact: [HashMap<Box<str>, Vec<Arc<Endpoint>>>; 9] = Default::default();
        // Templates by shape, shapes in the order their best endpoint ranks.
        let mut shapes: [Vec<(String, Vec<Arc<Endpoint>>)>; 9] = Default::default();
        let mut shape_at: [HashMap<String, usize>; 9] = Default::default();
        let mut tables: [MethodTable; 9] = Default::default();
        let mut headers = canned::SharedHeaders::default();
        let mut by_path_alone = true;
        for e in entries {
            let endpoint = match compile_endpoint(&e, &upstreams, hits.counter(&e.id), &mut headers)
            {
                Ok(x) => Arc::new(x),
                Err(message) => {
                    errors.push(CompileError {
                        id: e.id.clone(),
                        message,
                    });
                    continue;
                }
            };
            by_path_alone &= !endpoint.reads_request();
            let v = e.spec.verb.index();
            match &e.spec.path {
                PathSpec::Exact(p) => exact[v]
                    .entry(p.as_str().into())
                    .or_default()
                    .push(endpoint),
                PathSpec::Template(t) => {
                    let shape = crate::config::endpoint::normalize_template(t);
                    match shape_at[v].get(&shape) {
                        Some(&i) => shapes[v][i].1.push(endpoint),
                        None => {
                            shape_at[v].insert(shape.clone(), shapes[v].len());
                            shapes[v].push((shape, vec![endpoint]));
                        }
                    }
                }
                PathSpec::Regex(r) => match compile_path_regex(r) {
                    Ok(re) => tables[v].regexes.push((re, endpoint)),
                    Err(err) => errors.push(CompileError {
                        id: e.id.clone(),
                        message: format!("path_regex does not compile: {err}"),
                    }),
                },
            }
        }
        for ((table, exact), shapes) in tables.iter_mut().zip(exact).zip(shapes) {
            let routes: Vec<(Box<str>, Box<str>, Group)> = exact
                .into_iter()
                .filter_map(|(k, g)| Some((k, Box::default(), Group::new(g)?)))
                .collect();
            table.exact = table::PathTable::build(routes.into_iter());
            let list: Vec<(String, Group)> = shapes
                .into_iter()
                .filter_map(|(s, g)| Some((s, Group::new(g)?)))
                .collect();
            table.templates = Templates::build(&list);
            if table.regexes.len() >= REGEX_SET_FROM {
                let patterns = table.regexes.iter().map(|(re, _)| re.as_str());
                table.regex_set = regex::RegexSetBuilder::new(patterns)
                    .size_limit(REGEX_SET_SIZE_LIMIT)
                    .build()
                    .ok();
            }
        }
        let router = Router {
            tables: Arc::new(tables),
            delta: Delta::default(),
            by_path_alone,
            layers,
            fallback,
            upstreams,
            generation,
        };
        (router, errors)
    }

    /// The endpoint that answers a request: for the request's method, then
    /// for `ANY`, an exact path, then a template, then a regex; on one route
    /// the first endpoint (by priority, then age) whose conditions hold.
    #[inline]
    pub fn find<'r>(&'r self, method: &http::Method, path: &str, facts: &Facts<'_>) -> Lookup<'r> {
        let own = Verb::from_method(method).map(Verb::index);
        let verbs = [own, Some(Verb::Any.index())];
        for &v in verbs.iter().flatten() {
            if let Some(g) = self.exact(v, path) {
                match pick(g, facts) {
                    Pick::Hit(e) => return Lookup::Hit(e, Vec::new()),
                    Pick::NeedBody => return Lookup::NeedBody,
                    Pick::None => {}
                }
            }
        }
        let tables = verbs.map(|v| v.map(|v| &self.tables[v]));
        for t in tables.iter().flatten() {
            let found = t.templates.find(path, facts);
            if !matches!(found, Lookup::Miss) {
                return found;
            }
        }
        for t in tables.iter().flatten() {
            for e in t.regex_hits(path) {
                match pick_one(e, facts) {
                    Pick::Hit(e) => return Lookup::Hit(e, Vec::new()),
                    Pick::NeedBody => return Lookup::NeedBody,
                    Pick::None => {}
                }
            }
        }
        Lookup::Miss
    }

    /// The endpoint that answers `method` on `path` whatever else the request
    /// holds (query, headers, body); `None` when there is none, or when the
    /// rest of the request could change the answer (conditions on the route,
    /// or on one that could answer it), so that `find` must tell.
    #[inline]
    pub fn find_by_path(&self, method: &http::Method, path: &str) -> ByPath<'_> {
        if self.by_path_alone {
            let headers = http::HeaderMap::new();
            return match self.find(method, path, &Facts::new(None, &headers)) {
                Lookup::Hit(e, _) => ByPath::Hit(e),
                Lookup::Miss => ByPath::Miss,
                Lookup::NeedBody => ByPath::Unsure,
            };
        }
        // An exact route is decisive when its one endpoint takes every request.
        let Some(own) = Verb::from_method(method) else {
            return ByPath::Unsure;
        };
        for v in [own.index(), Verb::Any.index()] {
            if let Some(g) = self.exact(v, path) {
                return match g.plain {
                    true => ByPath::Hit(&g.first),
                    false => ByPath::Unsure,
                };
            }
        }
        ByPath::Unsure
    }

    /// The endpoint that answers `verb` on `path` with no headers, query or body.
    pub fn lookup(&self, verb: Verb, path: &str) -> Option<&Endpoint> {
        let method = http::Method::from_bytes(verb.as_str().as_bytes()).ok()?;
        let headers = http::HeaderMap::new();
        match self.find(&method, path, &Facts::new(None, &headers)) {
            Lookup::Hit(e, _) => Some(e),
            _ => None,
        }
    }

    pub fn endpoint_count(&self) -> usize {
        self.tables
            .iter()
            .map(|t| {
                t.exact.values().map(|g| g.len()).sum::<usize>() + t.templates.len + t.regexes.len()
            })
            .sum::<usize>()
            + self.delta.endpoints.len()
    }

    /// The endpoints on the exact path `path` for the verb at index `v`.
    /// The tables and the delta never both have a path for one verb.
    #[inline]
    fn exact(&self, v: usize, path: &str) -> Option<&Group> {
        match self.tables[v].exact.get(path) {
            Some((g, _)) => Some(g),
            None => self.delta.exact[v].get(path).map(|(g, _)| g),
        }
    }

    /// This router with one more runtime endpoint, compiling that one only;
    /// `None` when the endpoint must be placed by compiling the whole table.
    ///
    /// An endpoint goes to the delta when its path is exact and the tables
    /// have no endpoint on that path for its verb: then the delta's routes
    /// and the tables' are disjoint per verb, and looking in both answers
    /// as one table compiled from everything would. Once the delta holds
    /// about the square root of the table's size, the next create compiles
    /// everything: a create among n endpoints costs O(√n) on average.
    pub fn with_created(
        &self,
        created: RuntimeEndpoint,
        hits: &HitCounters,
    ) -> Option<Result<Router, CompileError>> {
        debug_assert_eq!(
            self.delta.endpoints.len(),
            self.layers.runtime.added().len()
        );
        let PathSpec::Exact(path) = &created.spec.path else {
            return None;
        };
        let v = created.spec.verb.index();
        let total = self.layers.files.len() + self.layers.runtime.len();
        if self.tables[v].exact.get(path).is_some()
            || self.delta.endpoints.len() >= delta_limit(total)
        {
            return None;
        }
        let id = created.id.to_string();
        let entry = Entry {
            id: id.clone(),
            spec: &created.spec,
            age: total,
        };
        let endpoint = match compile_endpoint(
            &entry,
            &self.upstreams,
            hits.counter(&id),
            &mut canned::SharedHeaders::default(),
        ) {
            Ok(e) => Arc::new(e),
            Err(message) => return Some(Err(CompileError { id, message })),
        };
        let mut endpoints = Vec::with_capacity(self.delta.endpoints.len() + 1);
        endpoints.extend(self.delta.endpoints.iter().cloned());
        endpoints.push(DeltaEndpoint {
            verb: v,
            path: path.as_str().into(),
            priority: created.spec.priority(),
            endpoint,
        });
        let by_path_alone =
            self.by_path_alone && !endpoints.iter().any(|d| d.endpoint.reads_request());
        Some(Ok(Router {
            tables: self.tables.clone(),
            delta: Delta::new(endpoints),
            by_path_alone,
            layers: Layers {
                files: self.layers.files.clone(),
                runtime: self.layers.runtime.push(created),
            },
            fallback: self.fallback.clone(),
            upstreams: self.upstreams.clone(),
            generation: self.generation + 1,
        }))
    }
}

/// How many endpoints the delta holds at most over a table of `total`.
fn delta_limit(total: usize) -> usize {
    total.isqrt().max(32)
}

/// An exact path, an empty tail, and the route's endpoints.
type ExactRoute = (Box<str>, Box<str>, Group);

/// A runtime endpoint on an exact path, created since the tables were
/// compiled.
#[derive(Clone)]
struct DeltaEndpoint {
    verb: usize,
    path: Box<str>,
    priority: i64,
    endpoint: Arc<Endpoint>,
}

/// The exact routes of the endpoints created since the tables were
/// compiled (`RuntimeLayer::added`), in creation order.
#[derive(Default)]
struct Delta {
    endpoints: Vec<DeltaEndpoint>,
    exact: [table::PathTable<Group>; 9],
}

impl Delta {
    fn new(endpoints: Vec<DeltaEndpoint>) -> Delta {
        // On one route: higher priority first, then older, as in the tables.
        let mut order: Vec<usize> = (0..endpoints.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&endpoints[a], &endpoints[b]);
            (x.verb, &x.path, std::cmp::Reverse(x.priority), a).cmp(&(
                y.verb,
                &y.path,
                std::cmp::Reverse(y.priority),
                b,
            ))
        });
        let mut routes: [Vec<ExactRoute>; 9] = Default::default();
        let mut i = 0;
        while let Some(&first) = order.get(i) {
            let (verb, path) = (endpoints[first].verb, &endpoints[first].path);
            let same = order[i..]
                .iter()
                .take_while(|&&j| endpoints[j].verb == verb && endpoints[j].path == *path)
                .count();
            let list = order[i..i + same]
                .iter()
                .map(|&j| endpoints[j].endpoint.clone())
                .collect();
            if let Some(group) = Group::new(list) {
                routes[verb].push((path.clone(), Box::default(), group));
            }
            i += same;
        }
        let exact = routes.map(|r| table::PathTable::build(r.into_iter()));
        Delta { endpoints, exact }
    }
}

/// Puts a template into the first tree that takes it, and tells whether it
/// was placed. A tree that already has the same shape holds a higher-ranked
/// endpoint: this one is shadowed.
fn insert_template(trees: &mut Vec<matchit::Router<Group>>, shape: &str, endpoint: &Group) -> bool {
    for tree in trees.iter_mut() {
        match tree.insert(shape, endpoint.clone()) {
            Ok(()) => return true,
            Err(matchit::InsertError::Conflict { with }) if with == shape => return false,
            Err(_) => continue,
        }
    }
    let mut tree = matchit::Router::new();
    let placed = tree.insert(shape, endpoint.clone()).is_ok();
    if placed {
        trees.push(tree);
    }
    placed
}

/// An endpoint for the request path; the reason when it cannot be built.
fn compile_endpoint(
    e: &Entry<'_>,
    upstreams: &HashMap<String, Arc<Upstream>>,
    hits: Arc<AtomicU64>,
    headers: &mut canned::SharedHeaders,
) -> Result<Endpoint, String> {
    let r = &e.spec.response;
    let action = match &r.proxy {
        Some(name) => match upstreams.get(name) {
            Some(u) => Action::Proxy(u.clone()),
            None => return Err(format!("response.proxy names an unknown upstream `{name}`")),
        },
        None => Action::Respond(Canned::new(r, headers)),
    };
    let template = match &r.template {
        Some(src) => Some(
            BodyTemplate::new(src)
                .map_err(|err| format!("response.template does not compile: {err}"))?,
        ),
        None => None,
    };
    let param_names = match &e.spec.path {
        PathSpec::Template(t) => crate::config::endpoint::template_params(t),
        _ => Vec::new(),
    };
    Ok(Endpoint {
        id: Arc::from(e.id.as_str()),
        action,
        conditions: e
            .spec
            .conditions
            .as_ref()
            .map(|c| Box::new(Conditions::compile(c))),
        template: template.map(Box::new),
        param_names,
        delay: r.delay,
        fault: r.fault,
        rate: r
            .rate_limit
            .map(|l| Box::new(crate::limits::EndpointRate::new(l))),
        hits,
    })
}

/// Requests each endpoint answered, by endpoint id; kept across routers.
#[derive(Debug, Default)]
pub struct HitCounters(std::sync::Mutex<HashMap<String, Arc<AtomicU64>>>);

impl HitCounters {
    /// The counter of endpoint `id` (a new one for a new endpoint).
    pub fn counter(&self, id: &str) -> Arc<AtomicU64> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(id.to_string()).or_default().clone()
    }

    pub fn get(&self, id: &str) -> u64 {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(id)
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Forgets the counters of endpoints that no longer exist.
    pub fn retain(&self, live: &HashSet<String>) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|id, _| live.contains(id));
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
impl Templates {
    /// The endpoint for a path with no headers, query or body.
    fn lookup(&self, path: &str) -> Option<&Endpoint> {
        let headers = http::HeaderMap::new();
        match self.find(path, &Facts::new(None, &headers)) {
            Lookup::Hit(e, _) => Some(e),
            _ => None,
        }
    }
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
            conditions: None,
            response: ResponseSpec {
                code: 200,
                headers: vec![],
                body: body.into(),
                proxy: None,
                ..ResponseSpec::default()
            },
        }
    }

    fn runtime(list: Vec<EndpointSpec>) -> Layers {
        Layers::numbered(vec![], list)
    }

    fn compile(layers: Layers) -> Router {
        let (r, errs) = Router::compile(layers, Arc::default(), None, 1);
        assert!(errs.is_empty(), "{errs:?}");
        r
    }

    fn hit(r: &Router, verb: Verb, path: &str) -> Option<String> {
        r.lookup(verb, path).map(|e| e.id.to_string())
    }

    /// Every shape against every path: the one-pass matcher and a matchit
    /// tree holding that one route agree on the match and the values.
    #[test]
    fn shapes_match_as_a_one_route_tree() {
        let shapes = [
            "/u/{p0}",
            "/u/{p0}/orders/{p1}",
            "/u/{p0}/{*p1}",
            "/{p0}",
            "/{p0}/a",
            "/files/{*p0}",
            "/img/x{p0}.png",
            "/img/{p0}.png/{p1}",
            "/v1/users/{p0}/",
            "/é/{p0}/ü",
        ];
        let paths = [
            "/",
            "/u",
            "/u/",
            "/u/7",
            "/u/7/",
            "/u/7/orders",
            "/u/7/orders/",
            "/u/7/orders/9",
            "/u/7/orders/9/x",
            "/u/7/x/y/z",
            "/a",
            "/a/a",
            "/b/a",
            "/files",
            "/files/",
            "/files/a",
            "/files/a/b/c",
            "/img/x.png",
            "/img/x1.png",
            "/img/xy.png/z",
            "/img/.png/z",
            "/img/a.png/",
            "/img/a.png/b",
            "/v1/users/3/",
            "/v1/users/3",
            "/é/ñ/ü",
            "/é//ü",
            "/é/ñ/u",
        ];
        for shape in shapes {
            let mut tree = matchit::Router::new();
            tree.insert(shape, ()).unwrap();
            for path in paths {
                let want = tree.at(path).ok().map(|m| {
                    m.params
                        .iter()
                        .map(|(_, v)| v.to_string())
                        .collect::<Vec<_>>()
                });
                let got = match_shape(shape, path)
                    .map(|v| v.into_iter().map(str::to_string).collect::<Vec<_>>());
                assert_eq!(got, want, "{shape} against {path}");
            }
        }
    }

    /// Templates that no one tree can hold together still follow the
    /// tree's order: a static segment beats a parameter, which beats a
    /// catch-all, segment by segment from the left.
    #[test]
    fn conflicting_templates_keep_the_most_specific_first() {
        let t = |p: &str| PathSpec::Template(p.into());
        let list = vec![
            spec(Verb::Get, t("/{a}/a"), None, "param then a"),
            spec(Verb::Get, t("/b/{x}"), None, "b then param"),
            spec(Verb::Get, t("/b/{*rest}"), None, "b then catch-all"),
        ];
        let (router, errors) = Router::compile(runtime(list), Arc::default(), None, 1);
        assert!(errors.is_empty(), "{errors:?}");
        let get = &router.tables[Verb::Get.index()].templates;
        assert!(get.rest.len() > 1, "the test needs conflicting templates");
        let id = |path: &str| router.lookup(Verb::Get, path).map(|e| e.id.to_string());
        assert_eq!(
            id("/b/a").as_deref(),
            Some("2"),
            "static b beats {{a}}, {{x}} beats {{*rest}}"
        );
        assert_eq!(id("/c/a").as_deref(), Some("1"));
        assert_eq!(id("/b/a/c").as_deref(), Some("3"));
        assert_eq!(id("/b/c/d/e").as_deref(), Some("3"));
        assert_eq!(id("/c/d"), None);
        assert_eq!(id("/b"), None);
    }

    /// With enough regexes to be matched as one set, the order is still the
    /// rank order: priority, then age; and a regex that needs a condition
    /// the request lacks lets the next one answer.
    #[test]
    fn regex_sets_keep_the_rank_order() {
        for n in [REGEX_SET_FROM - 3, REGEX_SET_FROM - 2, 40] {
            let mut list: Vec<EndpointSpec> = (0..n)
                .map(|i| {
                    spec(
                        Verb::Get,
                        PathSpec::Regex(format!("/r{i}/[0-9]+")),
                        None,
                        &format!("r{i}"),
                    )
                })
                .collect();
            list.push(spec(
                Verb::Get,
                PathSpec::Regex("/r1/.*".into()),
                Some(5),
                "wide",
            ));
            list.push(spec(
                Verb::Get,
                PathSpec::Regex("/r2/.+".into()),
                None,
                "late",
            ));
            let (router, errors) = Router::compile(runtime(list), Arc::default(), None, 1);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(
                router.tables[Verb::Get.index()].regex_set.is_some(),
                n + 2 >= REGEX_SET_FROM
            );
            let body = |path: &str| router.lookup(Verb::Get, path).map(|e| e.id.to_string());
            // The ids are the positions in the list, from 1.
            assert_eq!(body("/r0/7").as_deref(), Some("1"));
            assert_eq!(
                body("/r1/7").as_deref(),
                Some(&*(n + 1).to_string()),
                "priority 5 first"
            );
            assert_eq!(body("/r2/7").as_deref(), Some("3"), "older first");
            assert_eq!(body("/r2/x").as_deref(), Some(&*(n + 2).to_string()));
            assert_eq!(body("/r3/x"), None);
            assert_eq!(body("/r3/7/"), None, "anchored");
        }
    }

    /// A table entry for a route, or for a bucket, is one cache line.
    #[test]
    fn table_entries_are_one_cache_line() {
        assert_eq!(table::entry_size::<Group>(), 64);
        assert_eq!(table::entry_size::<Bucket>(), 64);
    }

    #[test]
    fn shapes_match_as_the_tree_does() {
        assert_eq!(match_shape("/u/{p0}", "/u/7"), Some(vec!["7"]));
        assert_eq!(match_shape("/u/{p0}", "/u/"), None);
        assert_eq!(match_shape("/u/{p0}", "/u/7/"), None);
        assert_eq!(match_shape("/u/{p0}", "/v/7"), None);
        assert_eq!(
            match_shape("/img/x{p0}.png/{*p1}", "/img/x12.png/a/b"),
            Some(vec!["12", "a/b"])
        );
        assert_eq!(match_shape("/img/x{p0}.png", "/img/x.png"), None);
        assert_eq!(match_shape("/a/{*p0}", "/a/"), None);
        assert_eq!(match_shape("/a/b", "/a/b"), Some(vec![]));
        let mut shapes = vec![
            "/a/{*p0}",
            "/a/{p0}/{p1}",
            "/a/b/{p0}",
            "/a/{p0}/c",
            "/a/x{p0}/c",
        ];
        shapes.sort_by(|a, b| specificity(a, b));
        assert_eq!(
            shapes,
            [
                "/a/b/{p0}",
                "/a/x{p0}/c",
                "/a/{p0}/c",
                "/a/{p0}/{p1}",
                "/a/{*p0}"
            ]
        );
    }

    /// Endpoints created one by one, each placed in the delta when it can
    /// be, are found as in one router compiled from all of them: random
    /// verbs (with `ANY`), exact paths and templates, priorities, conditions,
    /// and file endpoints that runtime ones shadow.
    #[test]
    fn creates_in_the_delta_answer_as_a_full_compile() {
        let only_if = |mut s: EndpointSpec, q: &str| {
            let n = crate::config::doc::Node::from_json(
                &serde_json::json!({"query": {q: {"present": true}}}),
            );
            let mut d = crate::config::doc::Diags::lenient();
            s.conditions = crate::config::conditions::decode(&n, &mut d);
            s
        };
        let paths = ["/a", "/b", "/c/d", "/c/{x}", "/{y}", "/a/{*rest}"];
        let verbs = [Verb::Get, Verb::Post, Verb::Any];
        let queries = [None, Some("q"), Some("r")];
        let mut rng = fastrand::Rng::with_seed(7);
        let mut by_path = 0;
        for round in 0..200 {
            let files: Vec<FileEndpoint> = (0..rng.usize(0..3))
                .map(|i| FileEndpoint {
                    id: format!("f-{i}"),
                    spec: spec(
                        verbs[rng.usize(..verbs.len())],
                        PathSpec::Exact(paths[rng.usize(..2)].into()),
                        None,
                        "file",
                    ),
                    source: "x.toml".into(),
                })
                .collect();
            let mut layers = runtime(vec![]);
            layers.files = Arc::new(files);
            let hits = HitCounters::default();
            let mut grown = Router::compile_counted(layers, Arc::default(), None, 1, &hits).0;
            let mut in_delta = 0;
            let mut keys = HashSet::new();
            for id in 1..=rng.u64(1..40) {
                let path = paths[rng.usize(..paths.len())];
                let path = if path.contains('{') {
                    PathSpec::Template(path.into())
                } else {
                    PathSpec::Exact(path.into())
                };
                let priority = rng.bool().then(|| rng.i64(-1..=1));
                let mut s = spec(verbs[rng.usize(..verbs.len())], path, priority, "");
                if let Some(q) = queries[rng.usize(..queries.len())] {
                    s = only_if(s, q);
                }
                if !keys.insert(s.conflict_key()) {
                    continue;
                }
                let created = RuntimeEndpoint { id, spec: s };
                grown = match grown.with_created(created.clone(), &hits) {
                    Some(r) => {
                        in_delta += 1;
                        r.expect("compiles")
                    }
                    None => {
                        let layers = Layers {
                            files: grown.layers.files.clone(),
                            runtime: grown.layers.runtime.push(created),
                        };
                        Router::compile_counted(layers, Arc::default(), None, 2, &hits).0
                    }
                };
            }
            let layers = Layers {
                files: grown.layers.files.clone(),
                runtime: grown.layers.runtime.to_vec().into(),
            };
            let full = compile(layers);
            assert_eq!(
                grown.endpoint_count(),
                full.endpoint_count(),
                "round {round}"
            );
            let headers = http::HeaderMap::new();
            for method in [http::Method::GET, http::Method::POST, http::Method::PUT] {
                for path in ["/a", "/b", "/c/d", "/c/e", "/z", "/a/b/c", "/"] {
                    for query in queries {
                        let facts = Facts::new(query, &headers);
                        let id = |r: &Router| match r.find(&method, path, &facts) {
                            Lookup::Hit(e, _) => Some(e.id.to_string()),
                            _ => None,
                        };
                        assert_eq!(
                            id(&grown),
                            id(&full),
                            "round {round}: {method} {path} ?{query:?} ({in_delta} in the delta)"
                        );
                        // What the path alone decides, the whole request does too.
                        for r in [&grown, &full] {
                            match r.find_by_path(&method, path) {
                                ByPath::Hit(e) => {
                                    by_path += 1;
                                    assert_eq!(Some(e.id.to_string()), id(r), "{method} {path}");
                                }
                                ByPath::Miss => {
                                    by_path += 1;
                                    assert_eq!(None, id(r), "{method} {path}");
                                }
                                ByPath::Unsure => {}
                            }
                        }
                    }
                }
            }
        }
        assert!(
            by_path > 1000,
            "{by_path} lookups decided by the path alone"
        );
    }

    #[test]
    fn a_route_that_refuses_does_not_hide_less_specific_ones() {
        let only_if = |mut s: EndpointSpec, q: &str| {
            let n = crate::config::doc::Node::from_json(
                &serde_json::json!({"query": {q: {"present": true}}}),
            );
            let mut d = crate::config::doc::Diags::lenient();
            s.conditions = crate::config::conditions::decode(&n, &mut d);
            s
        };
        let t = |p: &str| PathSpec::Template(p.into());
        let r = compile(runtime(vec![
            only_if(spec(Verb::Get, t("/a/b/{x}"), None, ""), "b"),
            spec(Verb::Get, t("/a/{y}/{x}"), None, ""),
            only_if(spec(Verb::Get, t("/c/{x}"), None, ""), "c"),
            only_if(spec(Verb::Get, t("/c/{x}/{y}"), None, ""), "c"),
            spec(Verb::Get, t("/c/{*rest}"), None, ""),
        ]));
        let find = |path: &str, query: Option<&str>| {
            let headers = http::HeaderMap::new();
            match r.find(&http::Method::GET, path, &Facts::new(query, &headers)) {
                Lookup::Hit(e, _) => Some(e.id.to_string()),
                _ => None,
            }
        };
        assert_eq!(find("/a/b/1", Some("b")).as_deref(), Some("1"));
        assert_eq!(find("/a/b/1", None).as_deref(), Some("2"));
        assert_eq!(find("/c/1", Some("c")).as_deref(), Some("3"));
        assert_eq!(find("/c/1/2", Some("c")).as_deref(), Some("4"));
        assert_eq!(find("/c/1", None).as_deref(), Some("5"));
        assert_eq!(find("/c/1/2", None).as_deref(), Some("5"));
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

    fn shapes_list(shapes: &[String]) -> Vec<(String, Group)> {
        let response = ResponseSpec {
            code: 200,
            headers: vec![],
            body: String::new(),
            proxy: None,
            ..ResponseSpec::default()
        };
        let mut headers = canned::SharedHeaders::default();
        shapes
            .iter()
            .map(|s| {
                let e = Endpoint {
                    id: Arc::from(s.as_str()),
                    action: Action::Respond(Canned::new(&response, &mut headers)),
                    conditions: None,
                    template: None,
                    param_names: Vec::new(),
                    delay: None,
                    fault: None,
                    rate: None,
                    hits: Arc::default(),
                };
                (
                    s.clone(),
                    Group::new(vec![Arc::new(e)]).expect("one endpoint"),
                )
            })
            .collect()
    }

    /// Paths of one to `depth` segments, each one of `segs`.
    fn all_paths(segs: &[&str], depth: u32) -> Vec<String> {
        let mut out = Vec::new();
        for d in 1..=depth {
            for n in 0..segs.len().pow(d) {
                let mut path = String::new();
                for level in 0..d {
                    path.push('/');
                    path.push_str(segs[n / segs.len().pow(level) % segs.len()]);
                }
                out.push(path);
            }
        }
        out
    }

    /// Sets of templates out of `a`, `b`, a parameter and a final
    /// catch-all, cut into buckets of 1, 2 or 3 slashes, answer every
    /// request as the same templates in one set of trees do.
    #[test]
    fn buckets_keep_the_tree_order() {
        let catalogue: Vec<String> = all_paths(&["a", "b", "{p}", "{*r}"], 3)
            .iter()
            .filter(|p| !p.contains("{*r}/"))
            .map(|p| crate::config::endpoint::normalize_template(p))
            .collect();
        let mut requests = all_paths(&["a", "b", "c"], 4);
        requests.extend(["/".to_string(), String::new(), "/a/".to_string()]);
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let (mut bucketed_sets, mut kept_whole) = (0, 0);
        for _ in 0..300 {
            // A random subset, catch-alls last as `compile` ranks them.
            let mut shapes: Vec<String> = catalogue
                .iter()
                .filter(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % 4 == 0
                })
                .cloned()
                .collect();
            shapes.sort_by_key(|s| s.contains("{*"));
            let list = shapes_list(&shapes);
            let one_set = Templates::build_with(&list, 0);
            for key_slashes in 1..=3 {
                let t = Templates::build_with(&list, key_slashes);
                if t.key_slashes == 0 {
                    kept_whole += 1;
                } else {
                    bucketed_sets += 1;
                }
                assert_eq!(t.len, one_set.len);
                for path in &requests {
                    let want = one_set.lookup(path).map(|e| e.id.to_string());
                    let got = t.lookup(path).map(|e| e.id.to_string());
                    assert_eq!(got, want, "{path} in {shapes:?}, {key_slashes} slashes");
                    // The most specific of all the templates that match.
                    let best = shapes
                        .iter()
                        .filter(|s| match_shape(s, path).is_some())
                        .min_by(|a, b| specificity(a, b));
                    assert_eq!(
                        want.as_deref(),
                        best.map(String::as_str),
                        "{path} in {shapes:?}"
                    );
                }
            }
        }
        assert!(bucketed_sets > 100 && kept_whole > 100);
    }

    /// With conflicting templates a table is kept whole, and a path that
    /// routes of several trees match goes to the most specific of them:
    /// `/a/b/{*p0}` (static `b`) before `/a/{p0}/{*p1}`.
    #[test]
    fn conflicting_templates_are_not_bucketed() {
        let shapes: Vec<String> = ["/a/b/{p0}", "/a/{p0}/{*p1}", "/a/b/{*p0}"]
            .map(String::from)
            .into();
        let list = shapes_list(&shapes);
        let one_set = Templates::build_with(&list, 0);
        assert_eq!(one_set.rest.len(), 2);
        let t = Templates::build_with(&list, 3);
        assert_eq!(t.key_slashes, 0);
        let id = |t: &Templates| t.lookup("/a/b/c/d").map(|e| e.id.to_string());
        assert_eq!(id(&t).as_deref(), Some("/a/b/{*p0}"));
        assert_eq!(id(&t), id(&one_set));
    }

    #[test]
    fn many_templates_are_bucketed() {
        let mut list: Vec<EndpointSpec> = (0..100)
            .map(|i| {
                spec(
                    Verb::Get,
                    PathSpec::Template(format!("/t{i}/x/{{id}}")),
                    None,
                    "",
                )
            })
            .collect();
        list.push(spec(
            Verb::Get,
            PathSpec::Template("/{t}/b/c".into()),
            None,
            "",
        ));
        list.push(spec(
            Verb::Get,
            PathSpec::Template("/a/{x}/c".into()),
            None,
            "",
        ));
        list.push(spec(
            Verb::Get,
            PathSpec::Template("/{t}/{*r}".into()),
            None,
            "",
        ));
        list.push(spec(
            Verb::Get,
            PathSpec::Exact("/t5/x/me".into()),
            None,
            "",
        ));
        let r = compile(runtime(list));
        let t = &r.tables[Verb::Get.index()].templates;
        assert_eq!(t.key_slashes, 2);
        assert_eq!(r.endpoint_count(), 104);
        assert_eq!(hit(&r, Verb::Get, "/t5/x/7").as_deref(), Some("6"));
        assert_eq!(hit(&r, Verb::Get, "/t5/x/me").as_deref(), Some("104"));
        assert_eq!(hit(&r, Verb::Get, "/a/b/c").as_deref(), Some("102"));
        assert_eq!(hit(&r, Verb::Get, "/q/b/c").as_deref(), Some("101"));
        assert_eq!(hit(&r, Verb::Get, "/a/b/d").as_deref(), Some("103"));
        assert_eq!(hit(&r, Verb::Get, "/t5/y/7").as_deref(), Some("103"));
        assert_eq!(hit(&r, Verb::Get, "/t5"), None);
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
