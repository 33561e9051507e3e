//! The layering the code claims, measured from its own `use` statements and paths: the files
//! under src/ form a graph (an arrow from a file to the file that defines what it names,
//! through re-exports), and on that graph
//! - there is no import cycle (arrows from a file to its own parent modules, which Rust's
//!   module tree needs, are left out: a child may use what its parent defines);
//! - the top-level modules form no cycle either (the floors of the house);
//! - nothing outside `model/ort/` names the `ort` crate, and only `model/mod.rs` (the one place
//!   that builds the backend) reaches into `model::ort`;
//! - `session/` never reaches `server/`.
//!
//! Test-only code (`#[cfg(test)]` modules, the fake backend) is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The external crates each module names.
type ExternalCrates = BTreeMap<ModPath, BTreeSet<String>>;

/// A module path below `crate`, e.g. `["model", "ort", "encoder"]`.
type ModPath = Vec<String>;

struct Crate {
    /// Module -> its source file's text (test modules cut off).
    modules: BTreeMap<ModPath, String>,
}

impl Crate {
    fn load(src: &Path) -> Self {
        let mut modules = BTreeMap::new();
        let mut test_only: Vec<ModPath> = Vec::new();
        for file in rust_files(src) {
            let relative = file.strip_prefix(src).unwrap();
            let mut path: ModPath = relative.with_extension("").iter().map(|s| s.to_string_lossy().into_owned()).collect();
            match path.last().map(String::as_str) {
                Some("mod") | Some("lib") => {
                    path.pop();
                }
                Some("main") => continue,
                _ => {}
            }
            let text = std::fs::read_to_string(&file).unwrap();
            test_only.extend(test_children(&text).into_iter().map(|child| [path.clone(), vec![child]].concat()));
            if let Some(text) = production_code(&text) {
                modules.insert(path, text);
            }
        }
        modules.retain(|path, _| !test_only.iter().any(|t| path.starts_with(t)));
        Self { modules }
    }

    fn is_module(&self, path: &[String]) -> bool {
        self.modules.contains_key(path)
    }

    /// The module that defines `item` as named in `module`, following `pub use` re-exports.
    fn defining_module(&self, module: &[String], item: &str, depth: usize) -> ModPath {
        if depth > 8 {
            return module.to_vec();
        }
        let Some(text) = self.modules.get(module) else { return module.to_vec() };
        for (reexport, is_pub) in use_paths(text) {
            if !is_pub || reexport.last().map(String::as_str) != Some(item) {
                continue;
            }
            let absolute = self.absolute(module, &reexport);
            let (target, rest) = self.split(&absolute);
            if let Some(name) = rest.first() {
                return self.defining_module(&target, name, depth + 1);
            }
            return target;
        }
        module.to_vec()
    }

    /// A path as written in `module`, made absolute (below `crate`); external paths keep their
    /// crate name first, prefixed with `::`.
    fn absolute(&self, module: &[String], path: &[String]) -> ModPath {
        let mut base: ModPath;
        let mut rest = path;
        match path.first().map(String::as_str) {
            Some("crate") => {
                base = Vec::new();
                rest = &path[1..];
            }
            Some("self") => {
                base = module.to_vec();
                rest = &path[1..];
            }
            Some("super") => {
                base = module.to_vec();
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
            }
            Some(first) => {
                let mut child = module.to_vec();
                child.push(first.to_string());
                if self.is_module(&child) {
                    base = module.to_vec();
                } else {
                    let mut external = vec![format!("::{first}")];
                    external.extend(path[1..].iter().cloned());
                    return external;
                }
            }
            None => return module.to_vec(),
        }
        base.extend(rest.iter().cloned());
        base
    }

    /// The deepest module along `path`, and the names after it.
    fn split(&self, path: &[String]) -> (ModPath, ModPath) {
        let mut depth = 0;
        for n in 1..=path.len() {
            if self.is_module(&path[..n]) {
                depth = n;
            }
        }
        (path[..depth].to_vec(), path[depth..].to_vec())
    }

    /// Every arrow: (from module, to module), and the external crates each module names.
    fn arrows(&self) -> (BTreeSet<(ModPath, ModPath)>, ExternalCrates) {
        let mut arrows = BTreeSet::new();
        let mut externals: BTreeMap<ModPath, BTreeSet<String>> = BTreeMap::new();
        for (module, text) in &self.modules {
            let mut paths: Vec<ModPath> = use_paths(text).into_iter().map(|(p, _)| p).collect();
            paths.extend(inline_paths(text));
            for path in paths {
                let absolute = self.absolute(module, &path);
                if let Some(name) = absolute.first().and_then(|first| first.strip_prefix("::")) {
                    externals.entry(module.clone()).or_default().insert(name.to_string());
                    continue;
                }
                let (target, rest) = self.split(&absolute);
                let target = match rest.first() {
                    Some(item) => self.defining_module(&target, item, 0),
                    None => target,
                };
                if &target != module {
                    arrows.insert((module.clone(), target));
                }
            }
        }
        (arrows, externals)
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Child modules declared under `#[cfg(test)]` (`mod tests;`, the fake backend).
fn test_children(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|pair| pair[0].starts_with("#[cfg(test)]"))
        .filter_map(|pair| {
            pair[1].trim_start_matches("pub ").strip_prefix("mod ").and_then(|rest| rest.strip_suffix(';')).map(str::to_string)
        })
        .collect()
}

/// The file without comments and test-only code; `None` for a file that is test-only itself.
fn production_code(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        if line.starts_with("#![cfg(test)]") {
            return None;
        }
        if line.starts_with("#[cfg(test)]") {
            // The next item is test-only: a `mod x;` line, or a block to its closing brace.
            i += 1;
            let mut depth = 0i32;
            while i < lines.len() {
                let l = lines[i];
                depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
                i += 1;
                if depth <= 0 && (l.trim_end().ends_with('}') || l.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        if !line.starts_with("//") {
            kept.push(lines[i]);
        }
        i += 1;
    }
    Some(kept.join("\n"))
}

/// The paths of the file's `use` declarations, each with whether it is a `pub` re-export.
fn use_paths(text: &str) -> Vec<(ModPath, bool)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = find_use(rest) {
        let (is_pub, start) = at;
        let tail = &rest[start..];
        let end = tail.find(';').unwrap_or(tail.len());
        let tree = tail[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        for path in expand(&tree) {
            found.push((path, is_pub));
        }
        rest = &tail[end..];
    }
    found
}

/// The next `use` declaration at the start of a line: whether it is `pub` (to anyone who can
/// see the module), and where its tree starts.
fn find_use(text: &str) -> Option<(bool, usize)> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        for (prefix, is_pub) in [("use ", false), ("pub use ", true), ("pub(crate) use ", true), ("pub(super) use ", true)] {
            if trimmed.starts_with(prefix) {
                return Some((is_pub, offset + indent + prefix.len()));
            }
        }
        offset += line.len();
    }
    None
}

/// `a::{b::{C, D}, self, E as F}` -> `a::b::C`, `a::b::D`, `a`, `a::E`.
fn expand(tree: &str) -> Vec<ModPath> {
    fn go(prefix: &[String], tree: &str, out: &mut Vec<ModPath>) {
        let tree = tree.trim().trim_start_matches("::");
        if let Some(open) = tree.find('{') {
            let mut base = prefix.to_vec();
            base.extend(tree[..open].split("::").map(str::trim).filter(|s| !s.is_empty()).map(str::to_string));
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        go(&base, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            go(&base, &inner[start..], out);
            return;
        }
        let tree = tree.split(" as ").next().unwrap_or(tree).trim();
        let tree = if let Some(stripped) = tree.strip_suffix('*') { stripped.trim_end_matches("::") } else { tree };
        let mut path = prefix.to_vec();
        for segment in tree.split("::").map(str::trim).filter(|s| !s.is_empty()) {
            if segment != "self" {
                path.push(segment.to_string());
            }
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
    let mut out = Vec::new();
    go(&[], tree, &mut out);
    out
}

/// `crate::a::b` and `super::a` paths written in code (not in `use` declarations), and paths
/// through the `ort` crate.
fn inline_paths(text: &str) -> Vec<ModPath> {
    let mut paths = Vec::new();
    for root in ["crate::", "super::", "ort::"] {
        let mut rest = text;
        while let Some(at) = rest.find(root) {
            let before = rest[..at].chars().next_back();
            let tail = &rest[at..];
            let end = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                let path: ModPath = tail[..end].split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
                paths.push(path);
            }
            rest = &tail[end.max(1)..];
        }
    }
    paths
}

fn is_ancestor(ancestor: &[String], module: &[String]) -> bool {
    ancestor.len() < module.len() && module.starts_with(ancestor)
}

/// Strongly connected components of more than one node (Tarjan).
fn cycles(nodes: &BTreeSet<ModPath>, arrows: &BTreeSet<(ModPath, ModPath)>) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        next: BTreeMap<&'a ModPath, Vec<&'a ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        counter: usize,
        found: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        s.index.insert(v, s.counter);
        s.low.insert(v, s.counter);
        s.counter += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.next.get(v).cloned().unwrap_or_default() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut next: BTreeMap<&ModPath, Vec<&ModPath>> = BTreeMap::new();
    for (from, to) in arrows {
        next.entry(from).or_default().push(to);
    }
    let mut state = State {
        next,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        counter: 0,
        found: Vec::new(),
    };
    for v in nodes {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.found
}

fn show(path: &[String]) -> String {
    if path.is_empty() { "crate".into() } else { path.join("::") }
}

#[test]
fn the_layering_holds() {
    let krate = Crate::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let (arrows, externals) = krate.arrows();
    let nodes: BTreeSet<ModPath> = krate.modules.keys().cloned().collect();

    let sideways: BTreeSet<(ModPath, ModPath)> = arrows.iter().filter(|(from, to)| !is_ancestor(to, from)).cloned().collect();
    let up = arrows.len() - sideways.len();
    let file_cycles = cycles(&nodes, &sideways);

    let top = |p: &ModPath| p.first().cloned().into_iter().collect::<ModPath>();
    let floors: BTreeSet<ModPath> = nodes.iter().map(top).filter(|p| !p.is_empty()).collect();
    let floor_arrows: BTreeSet<(ModPath, ModPath)> =
        arrows.iter().map(|(a, b)| (top(a), top(b))).filter(|(a, b)| a != b && !a.is_empty() && !b.is_empty()).collect();
    let floor_cycles = cycles(&floors, &floor_arrows);

    let ort_root: ModPath = vec!["model".into(), "ort".into()];
    let naming_ort: Vec<String> =
        externals.iter().filter(|(m, crates)| crates.contains("ort") && !m.starts_with(&ort_root)).map(|(m, _)| show(m)).collect();
    let into_backend: Vec<String> = arrows
        .iter()
        .filter(|(from, to)| to.starts_with(&ort_root) && !from.starts_with(&ort_root) && from.as_slice() != ["model"])
        .map(|(from, to)| format!("{} -> {}", show(from), show(to)))
        .collect();
    let session_to_server: Vec<String> = arrows
        .iter()
        .filter(|(from, to)| from.first().map(String::as_str) == Some("session") && to.first().map(String::as_str) == Some("server"))
        .map(|(from, to)| format!("{} -> {}", show(from), show(to)))
        .collect();

    let floor_list: Vec<String> = floor_arrows.iter().map(|(a, b)| format!("{} -> {}", show(a), show(b))).collect();
    eprintln!(
        "architecture: {} files, {} arrows ({} to their own parent modules), {} import cycles among files, {} among top-level modules",
        nodes.len(),
        arrows.len(),
        up,
        file_cycles.len(),
        floor_cycles.len()
    );
    eprintln!("top-level arrows: {}", floor_list.join(", "));
    eprintln!("outside model/ort naming the ort crate: {naming_ort:?}; reaching into model::ort: {into_backend:?}");
    eprintln!("session -> server: {session_to_server:?}");

    let shown = |cs: &[Vec<ModPath>]| cs.iter().map(|c| c.iter().map(|p| show(p)).collect::<Vec<_>>().join(" <-> ")).collect::<Vec<_>>();
    assert!(file_cycles.is_empty(), "import cycles among files: {:?}", shown(&file_cycles));
    assert!(floor_cycles.is_empty(), "cycles among top-level modules: {:?}", shown(&floor_cycles));
    assert!(naming_ort.is_empty(), "only model/ort may name the ort crate: {naming_ort:?}");
    assert!(into_backend.is_empty(), "only model::load builds the backend: {into_backend:?}");
    assert!(session_to_server.is_empty(), "session/ must not use server/: {session_to_server:?}");
}

/// On the device data path nothing waits for the whole device but the one arm of
/// `Placement::upload_wait` that asks for it (`synchronize_inputs` is cudaDeviceSynchronize on
/// CUDA), and nothing goes through ort's hidden copy sessions (`Tensor::to`, `copy_into`: a CUDA
/// provider of their own per dtype pair, uncapped, behind one process-wide lock).
#[test]
fn no_device_wide_syncs_nor_copy_sessions_outside_placement() {
    let krate = Crate::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let naming = |needle: &str| -> Vec<String> {
        krate.modules.iter().filter(|(_, text)| text.contains(needle)).map(|(module, _)| show(module)).collect()
    };
    let syncs = naming(".synchronize_inputs()");
    assert_eq!(syncs, vec!["model::ort::placement".to_string()], "synchronize_inputs only behind upload_wait");
    for copy in [".copy_into(", ".copy_into_async(", ".to(AllocationDevice", ".to_async("] {
        assert!(naming(copy).is_empty(), "{copy} goes through ort's copy sessions: {:?}", naming(copy));
    }
}

#[test]
fn the_measure_sees_what_it_must() {
    // A tree of uses, re-exports followed to where an item is defined, and a cycle it must find.
    assert_eq!(
        expand("crate::a::{b::{C, D}, self, MaskFormat as F}"),
        vec![vec!["crate", "a", "b", "C"], vec!["crate", "a", "b", "D"], vec!["crate", "a"], vec!["crate", "a", "MaskFormat"],]
            .into_iter()
            .map(|p| p.into_iter().map(String::from).collect::<ModPath>())
            .collect::<Vec<_>>()
    );
    let module = |text: &str| text.to_string();
    let krate = Crate {
        modules: BTreeMap::from([
            (vec![], module("mod a;\nmod b;")),
            (vec!["a".into()], module("mod inner;\npub use inner::Thing;\n")),
            (vec!["a".into(), "inner".into()], module("use crate::b::Other;\npub struct Thing;")),
            (vec!["b".into()], module("pub struct Other;\nfn f() { crate::a::Thing; }\n")),
        ]),
    };
    let (arrows, _) = krate.arrows();
    let b: ModPath = vec!["b".into()];
    let inner: ModPath = vec!["a".into(), "inner".into()];
    assert!(arrows.contains(&(b.clone(), inner.clone())), "b names a::Thing, defined in a::inner: {arrows:?}");
    let nodes: BTreeSet<ModPath> = krate.modules.keys().cloned().collect();
    assert_eq!(cycles(&nodes, &arrows).len(), 1, "a::inner <-> b is a cycle");
    assert!(production_code("#[cfg(test)]\nmod tests {\n    use crate::x;\n}\n").is_some_and(|t| !t.contains("crate::x")));
}
