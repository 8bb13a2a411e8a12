//! The module map holds: every module of `src/` sits in a layer, imports only from layers below
//! its own (or from inside its own room), and no two files import each other.
//!
//! Imports are read from the source text: `use crate::…` trees, `crate::…` paths in code and
//! `super::…` paths, up to a file's `#[cfg(test)]` tests (tests may reach anywhere). A room's
//! `mod.rs` naming its own children by relative path (`check::Foo`) is the room's facade and is
//! not counted; a child reaching back into its `mod.rs` through `super::` is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom first: a module may import from lower layers only (and inside its own
/// room). A new top-level module must be placed here, which is the point: its place is decided.
const LAYERS: &[&[&str]] = &[
    // Vocabulary: keys, quantities, schedules, failure injection, logging.
    &["labels", "quantity", "cron", "failpoint", "telemetry"],
    // The API types and the pure rules over them.
    &["crd"],
    // Gang scheduling: which batch scheduler, its group object and pod marks, quota fit.
    &["scheduling"],
    &["validation", "mutate"],
    &["submission"],
    // Talking to the apiserver: health, job namespaces, Events, webhook registration; then
    // the caches of what it holds; then certificates and metrics, which read both.
    &["health", "namespaces", "events", "registration"],
    &["cache"],
    &["certs", "metrics"],
    // The two jobs.
    &["webhook", "reconciler", "schedules", "connect"],
    // The process: serving, the admin port, shutdown, the offline render; then flags, their
    // conversion into configs, and the composition of the parts.
    &["server", "admin", "shutdown", "render"],
    &["cli"],
    &["config"],
    &["serve"],
];

/// Module path (`a::b`) of a file under `src/`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments and its trailing `#[cfg(test)]` items.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        if !path.is_empty() && path != "self" {
            out.push(format!("{prefix}{path}"));
        } else if path == "self" {
            out.push(prefix.trim_end_matches("::").to_string());
        }
        return;
    };
    let head = format!("{prefix}{}", &tree[..open]);
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&head, &inner[start..i], out);
                start = i + 1;
            }
            _ => {}
        }
    }
    expand(&head, &inner[start..], out);
}

/// Every `crate::`/`super::` path a file's code names, made absolute (`crate::` dropped).
fn paths(module: &str, code: &str) -> BTreeSet<String> {
    let mut raw = Vec::new();
    // `use` trees first: braces hide the modules from the plain scan below.
    for (at, _) in code.match_indices("use ") {
        let rest = &code[at + 4..];
        if let Some(end) = rest.find(';') {
            let tree = &rest[..end];
            if tree.starts_with("crate::") || tree.starts_with("super::") {
                expand("", tree, &mut raw);
            }
        }
    }
    // Then plain paths in code.
    for root in ["crate::", "super::"] {
        for (at, _) in code.match_indices(root) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            raw.push(path);
        }
    }
    // `super` is the module's parent (for a `mod.rs`, the parent of its room).
    let own: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
    raw.into_iter()
        .filter_map(|p| {
            let mut segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
            if segs.first() == Some(&"crate") {
                segs.remove(0);
                return Some(segs.join("::"));
            }
            let mut up = 0;
            while segs.first() == Some(&"super") {
                segs.remove(0);
                up += 1;
            }
            let keep = own.len().checked_sub(up)?;
            let mut abs: Vec<&str> = own[..keep].to_vec();
            abs.extend(segs);
            Some(abs.join("::"))
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// The modules of `src/` and, for each, the other modules it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<String, std::path::PathBuf> = files
        .into_iter()
        .map(|f| (module_of(f.strip_prefix(&src).expect("under src")), f))
        .collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("read source");
        let mut deps = BTreeSet::new();
        for path in paths(module, &code(&text)) {
            // The longest prefix that is a module.
            let segs: Vec<&str> = path.split("::").collect();
            let target = (1..=segs.len())
                .rev()
                .map(|n| segs[..n].join("::"))
                .find(|m| modules.contains_key(m));
            if let Some(target) = target
                && &target != module
            {
                deps.insert(target);
            }
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top(module)))
}

#[test]
fn the_reader_finds_imports_of_every_form() {
    let code = "use crate::{a::{b, c::D}, e as f};\nuse super::g::H;\nfn x() { crate::i::j(); super::k(); }";
    assert_eq!(
        paths("m::n", code),
        BTreeSet::from(["a::b", "a::c::D", "e", "i::j", "m::g::H", "m::k"].map(String::from)),
        "paths read from a plain file"
    );
    assert_eq!(
        paths("m", "use super::z;"),
        BTreeSet::from(["z".to_string()]),
        "super of a mod.rs is the parent of its room"
    );
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<String> = graph()
        .into_keys()
        .filter(|m| !m.is_empty() && top(m) != "main" && layer(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules in no layer of tests/architecture.rs: {unplaced:?}"
    );
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let mut upward = Vec::new();
    for (module, deps) in graph() {
        let Some(own) = layer(&module) else { continue };
        for dep in deps {
            if top(&dep) != top(&module) && layer(&dep).is_some_and(|l| l >= own) {
                upward.push(format!("{module} -> {dep}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that are not downward: {upward:#?}"
    );
}

#[test]
fn no_two_files_import_each_other() {
    let graph = graph();
    let mut cycles = Vec::new();
    for (a, deps) in &graph {
        for b in deps {
            if a < b && graph.get(b).is_some_and(|d| d.contains(a)) {
                cycles.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "files that import each other: {cycles:#?}"
    );
}

#[test]
fn the_module_map_in_lib_rs_names_every_module_once() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("read lib.rs");
    let mut mapped = Vec::new();
    for line in lib.lines().filter(|l| l.starts_with("//! |")) {
        if let Some(module) = line.split('|').nth(2).and_then(|c| {
            let c = c.trim();
            c.strip_prefix('`')?.strip_suffix('`')
        }) {
            mapped.push(module.to_string());
        }
    }
    let declared: BTreeSet<String> = graph()
        .into_keys()
        .map(|m| top(&m).to_string())
        .filter(|m| !m.is_empty() && m != "main")
        .collect();
    let listed: BTreeSet<String> = mapped.iter().cloned().collect();
    assert_eq!(
        mapped.len(),
        listed.len(),
        "a module listed twice: {mapped:?}"
    );
    assert_eq!(
        listed, declared,
        "the module map in src/lib.rs and the modules of src/ differ"
    );
    // The map's rows follow the layers.
    let order: Vec<usize> = mapped.iter().filter_map(|m| layer(m)).collect();
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "the module map in src/lib.rs is not in layer order: {mapped:?}"
    );
}
