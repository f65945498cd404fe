//! The fuzz targets (`echo_gateway::fuzzing`, run by cargo-fuzz from `fuzz/`)
//! as property tests: each on its committed corpus (`fuzz/corpus/<target>/`),
//! on the inputs that once broke it, and on a few hundred random and mutated
//! inputs. See fuzz/README.md.

use std::path::Path;
use std::sync::Mutex;

use echo_gateway::fuzzing;
use proptest::prelude::*;

/// One target at a time: a config file sets process-wide limits (regex
/// and template output sizes) that the other targets' routers are built with.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(target: &str, data: &[u8]) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    fuzzing::run(target, data);
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Inputs that once made a target panic or hang, by target; each is fixed.
const REGRESSIONS: &[(&str, &[u8])] = &[
    // Empty lines before the upstream's status line: the client got
    // `HTTP/1.1` alone on the first line.
    (
        "upstream_response",
        b"\x00\n\n\nHTTP/1.1 500 Oops\nContent-Length: 1\n\nx",
    ),
];

#[test]
fn every_target_on_its_corpus_and_regressions() {
    for &target in fuzzing::TARGETS {
        for seed in corpus(target) {
            run(target, &seed);
        }
    }
    for (target, input) in REGRESSIONS {
        run(target, input);
    }
}

/// A change to a seed: bytes flipped, put in, taken out, or the seed cut.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Cut(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Remove(i, n)),
        any::<usize>().prop_map(Edit::Cut),
    ]
}

fn mutate(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match e {
            Edit::Set(i, b) if !data.is_empty() => {
                let i = i % data.len();
                data[i] = *b;
            }
            Edit::Set(..) => {}
            Edit::Insert(i, bytes) => {
                let i = at(*i, data.len());
                data.splice(i..i, bytes.iter().copied());
            }
            Edit::Remove(i, n) => {
                let i = at(*i, data.len());
                let end = (i + n).min(data.len());
                data.drain(i..end);
            }
            Edit::Cut(i) => data.truncate(at(*i, data.len())),
        }
    }
    data
}

/// Random bytes, and seeds of the corpus changed a little.
fn inputs(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(target);
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512),
        3 => (prop::sample::select(seeds), prop::collection::vec(edit(), 1..6))
            .prop_map(|(seed, edits)| mutate(seed, &edits)),
    ]
}

macro_rules! property {
    ($name:ident, $target:literal) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
            #[test]
            fn $name(data in inputs($target)) {
                run($target, &data);
            }
        }
    };
}

property!(config_files_never_panic, "config");
property!(admin_documents_never_panic, "admin_doc");
property!(templates_never_panic, "template");
property!(requests_never_panic, "request");
property!(upstream_responses_never_panic, "upstream_response");
