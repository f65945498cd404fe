//! Why no endpoint answered a request: its nearest misses, each with the
//! reason it failed. Computed on demand (listing the journal, or a 404 when
//! asked for), never for requests that match.

use super::matcher::Facts;
use super::{Endpoint, Group, Router};
use crate::config::Verb;

/// An endpoint that nearly answered, and why it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearMiss {
    pub endpoint: String,
    pub reason: String,
}

/// At most this many near misses are reported.
pub const MAX_NEAR_MISSES: usize = 5;

fn verb_name(index: usize) -> &'static str {
    Verb::ALL
        .get(index)
        .map_or(Verb::Any.as_str(), |v| v.as_str())
}

fn why_not(e: &Endpoint, facts: &Facts<'_>) -> String {
    match &e.conditions {
        None => "it answers this request".into(),
        Some(c) => match c.check_head(facts).and_then(|()| c.check_body(facts)) {
            Ok(()) => "an endpoint ranked higher answered first".into(),
            Err(failed) => failed.0,
        },
    }
}

impl Router {
    /// The endpoints nearest to answering `method` on `path`: those on the
    /// path (with another verb, or whose conditions failed), else those whose
    /// paths are closest.
    pub fn explain(&self, method: &http::Method, path: &str, facts: &Facts<'_>) -> Vec<NearMiss> {
        let own = Verb::from_method(method).map(Verb::index);
        let mut out = Vec::new();
        for (i, table) in self.tables.iter().enumerate() {
            let verb_ok = i == Verb::Any.index() || Some(i) == own;
            let mut groups: Vec<&Group> = Vec::new();
            if let Some(g) = self.exact(i, path) {
                groups.push(g);
            }
            groups.extend(table.templates.all_matches(path));
            let regex_hits = table.regex_hits(path);
            let endpoints = groups.into_iter().flat_map(|g| g.iter()).chain(regex_hits);
            for e in endpoints {
                let reason = if verb_ok {
                    why_not(e, facts)
                } else {
                    format!("its verb is {}, the request's is {method}", verb_name(i))
                };
                out.push(NearMiss {
                    endpoint: e.id.to_string(),
                    reason,
                });
            }
        }
        // Endpoints of the request's own verb first: their conditions failed.
        out.sort_by_key(|m| m.reason.starts_with("its verb is "));
        if out.is_empty() {
            out = self.nearest_paths(path);
        }
        out.truncate(MAX_NEAR_MISSES);
        out
    }

    /// Endpoints whose paths share the longest start with `path`.
    fn nearest_paths(&self, path: &str) -> Vec<NearMiss> {
        let specs = self
            .layers
            .files
            .iter()
            .map(|f| (f.id.clone(), &f.spec))
            .chain(
                self.layers
                    .runtime
                    .iter()
                    .map(|r| (r.id.to_string(), &r.spec)),
            );
        let mut scored: Vec<(usize, usize, String, String)> = specs
            .map(|(id, spec)| {
                let p = spec.path.as_str();
                let common = p
                    .bytes()
                    .zip(path.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                (common, p.len().abs_diff(path.len()), id, p.to_string())
            })
            .filter(|(common, ..)| *common > 1)
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(MAX_NEAR_MISSES)
            .map(|(_, _, id, p)| NearMiss {
                endpoint: id,
                reason: format!("its path `{p}` does not match"),
            })
            .collect()
    }
}
