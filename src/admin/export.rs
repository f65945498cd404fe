//! The runtime layer as TOML: the way back from runtime edits into the GitOps
//! repository. The output is a config file that `validate` accepts and that,
//! loaded, serves the very same mocks.

use serde::Serialize;

use crate::config::PathSpec;
use crate::router::RuntimeEndpoint;

#[derive(Serialize)]
struct File<'a> {
    endpoints: Vec<Endpoint<'a>>,
}

#[derive(Serialize)]
struct Endpoint<'a> {
    id: String,
    verb: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_regex: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<i64>,
    response: Response<'a>,
}

#[derive(Serialize)]
struct Response<'a> {
    code: u16,
    #[serde(skip_serializing_if = "toml::Table::is_empty")]
    headers: toml::Table,
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy: Option<&'a str>,
}

/// A config file with the runtime endpoints; ids become `runtime-<id>`.
pub fn runtime_toml<'a>(runtime: impl IntoIterator<Item = &'a RuntimeEndpoint>) -> String {
    let endpoints = runtime
        .into_iter()
        .map(|e| {
            let (path, path_regex) = match &e.spec.path {
                PathSpec::Exact(p) | PathSpec::Template(p) => (Some(p.as_str()), None),
                PathSpec::Regex(r) => (None, Some(r.as_str())),
            };
            let headers = e
                .spec
                .response
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
                .collect();
            Endpoint {
                id: format!("runtime-{}", e.id),
                verb: e.spec.verb.as_str(),
                path,
                path_regex,
                priority: e.spec.priority,
                response: Response {
                    code: e.spec.response.code,
                    headers,
                    body: &e.spec.response.body,
                    proxy: e.spec.response.proxy.as_deref(),
                },
            }
        })
        .collect();
    let header = "# Runtime endpoints exported by echo-gateway. Commit this file to the\n# config repository to keep them; ids are runtime-<admin id>.\n\n";
    match toml::to_string(&File { endpoints }) {
        Ok(body) => format!("{header}{body}"),
        // Plain strings and integers always serialise; say so rather than panic.
        Err(e) => format!("# export failed: {e}\n"),
    }
}
