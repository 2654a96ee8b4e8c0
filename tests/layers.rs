//! The module layers, as a check anyone can run (`cargo test --test layers`): the wire types
//! in `src/api` import nothing from the server or the pages; the services in `src/server`
//! import nothing from the pages or from `site` (which assembles both). So no import cycle
//! runs through the wire types or the services.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The lines of `text` that name one of `forbidden` modules of this crate (`crate::x`, or
/// `super::x` from a module directly under the crate root), comments aside.
fn naming(text: &str, forbidden: &[&str], top_level: bool) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .filter(|l| {
            forbidden.iter().any(|m| {
                l.contains(&format!("crate::{m}::"))
                    || l.contains(&format!("crate::{m};"))
                    || l.contains(&format!("crate::{m}}}"))
                    || (top_level && l.contains(&format!("super::{m}::")))
            })
        })
        .map(|l| l.trim().to_string())
        .collect()
}

fn violations(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(layer);
    let mut found = Vec::new();
    for file in sources(&root) {
        let text = std::fs::read_to_string(&file).unwrap();
        let top_level = file.parent() == Some(root.as_path());
        for line in naming(&text, forbidden, top_level) {
            found.push(format!("{}: {line}", file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().display()));
        }
    }
    found
}

#[test]
fn the_wire_types_import_nothing_from_the_server_or_the_pages() {
    let found = violations("api", &["server", "site", "pages", "components", "app"]);
    assert!(found.is_empty(), "src/api must hold only the types both sides share:\n{}", found.join("\n"));
}

#[test]
fn the_services_import_nothing_from_the_pages() {
    let found = violations("server", &["site", "pages", "components", "app"]);
    assert!(found.is_empty(), "src/server must not reach up into the pages:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_an_import_when_there_is_one() {
    let text = "use crate::server::state::AppState;\n// crate::server::x in a comment\nuse leptos::server::codee;\n";
    assert_eq!(naming(text, &["server"], false), vec!["use crate::server::state::AppState;"]);
    assert_eq!(naming("use super::server::x;", &["server"], true).len(), 1);
    assert!(naming("use super::server::x;", &["server"], false).is_empty());
}

// ---- The import graph, file by file -------------------------------------------------------
//
// Each source file is a node named by its module path (`server/rollback/store`); an edge runs
// from a file to every module it names (`crate::…`, `super::…`, `self::…`, in `use` trees and in
// paths in the code), resolved to the deepest module that is a file. Declaring a module
// (`mod x;`) is not an edge; re-exporting from it is. A unit-test module at the end of a file
// (`#[cfg(test)] mod tests`) is left out: its `super::*` names the file itself.

type Graph = std::collections::BTreeMap<Vec<String>, std::collections::BTreeSet<Vec<String>>>;

/// The module path of each file under `src/`.
fn modules() -> std::collections::BTreeMap<Vec<String>, PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = std::collections::BTreeMap::new();
    for file in sources(&src) {
        let rel = file.strip_prefix(&src).unwrap().with_extension("");
        let mut segs: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        if matches!(segs.last().map(String::as_str), Some("mod" | "lib" | "main")) {
            segs.pop();
        }
        out.insert(segs, file);
    }
    out
}

/// The code of a file without comments, string contents and its trailing unit tests.
fn code_of(text: &str) -> String {
    let tests = ["#[cfg(test)]\nmod tests", "#[cfg(test)]\npub mod tests"];
    let text = match tests.iter().filter_map(|t| text.find(t)).min() {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            out.push('"');
            i += 1;
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('"', '\n'); a lifetime ('a) is left as it is.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The paths of a `use` tree (`a::{b, c::{d, e}}` is `a::b`, `a::c::d`, `a::c::e`).
fn use_paths(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    fn split_top(s: &str) -> Vec<String> {
        let (mut parts, mut depth, mut cur) = (Vec::new(), 0, String::new());
        for c in s.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if c == ',' && depth == 0 {
                parts.push(std::mem::take(&mut cur));
            } else {
                cur.push(c);
            }
        }
        parts.push(cur);
        parts.into_iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
    }
    fn walk(prefix: &str, s: &str, out: &mut Vec<String>) {
        for part in split_top(s) {
            match part.find('{') {
                None => out.push(format!("{prefix}{}", part.split(" as ").next().unwrap().trim())),
                Some(i) => walk(&format!("{prefix}{}", &part[..i]), &part[i + 1..part.rfind('}').unwrap()], out),
            }
        }
    }
    let mut out = Vec::new();
    walk("", &tree, &mut out);
    out
}

/// Every path in `code` that starts at the crate (`crate::`, `super::`, `self::`).
fn named_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = String::new();
    let mut s = code;
    while let Some(i) = s.find("use ") {
        let word_start = i == 0 || !s.as_bytes()[i - 1].is_ascii_alphanumeric() && s.as_bytes()[i - 1] != b'_';
        rest.push_str(&s[..i]);
        let Some(end) = s[i..].find(';') else { break };
        if word_start {
            out.extend(use_paths(&s[i + 4..i + end]));
        } else {
            rest.push_str(&s[i..i + end + 1]);
        }
        s = &s[i + end + 1..];
    }
    rest.push_str(s);
    let b = rest.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let start = ["crate::", "super::", "self::"].iter().find(|p| b[i..].starts_with(p.as_bytes()));
        if start.is_some() && (i == 0 || !ident(b[i - 1])) {
            let mut j = i;
            while j < b.len() && (ident(b[j]) || b[j..].starts_with(b"::")) {
                j += if b[j] == b':' { 2 } else { 1 };
            }
            out.push(rest[i..j].to_string());
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The deepest file module `path`, named in the module `from`, reaches.
fn resolve(
    from: &[String],
    path: &str,
    files: &std::collections::BTreeMap<Vec<String>, PathBuf>,
) -> Option<Vec<String>> {
    let mut segs = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut cur: Vec<String> = match *segs.peek()? {
        "crate" => {
            segs.next();
            Vec::new()
        }
        "super" | "self" => {
            let mut cur = from.to_vec();
            while let Some(s) = segs.peek().copied().filter(|s| *s == "super" || *s == "self") {
                if s == "super" {
                    cur.pop();
                }
                segs.next();
            }
            cur
        }
        _ => return None,
    };
    for s in segs {
        cur.push(s.to_string());
        if !files.contains_key(&cur) {
            cur.pop();
            break;
        }
    }
    Some(cur)
}

fn import_graph() -> Graph {
    let files = modules();
    let mut graph = Graph::new();
    for (module, file) in &files {
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        let edges = graph.entry(module.clone()).or_default();
        for path in named_paths(&code) {
            if let Some(to) = resolve(module, &path, &files) {
                if &to != module && !to.is_empty() && files.contains_key(&to) {
                    edges.insert(to);
                }
            }
        }
    }
    graph
}

/// The cycles of `graph`: its strongly connected components of more than one file (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: std::collections::HashMap<&'g Vec<String>, (usize, usize)>,
        stack: Vec<&'g Vec<String>>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g Vec<String>) {
            self.index.insert(v, (self.next, self.next));
            self.next += 1;
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.index[w].1.min(self.index[v].1);
                    self.index.get_mut(v).unwrap().1 = low;
                } else if self.stack.contains(&w) {
                    let low = self.index[w].0.min(self.index[v].1);
                    self.index.get_mut(v).unwrap().1 = low;
                }
            }
            if self.index[v].0 == self.index[v].1 {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.join("/"));
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk { graph, index: Default::default(), stack: Vec::new(), next: 0, found: Vec::new() };
    for v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn no_file_in_src_imports_itself_through_others() {
    let graph = import_graph();
    assert!(graph.len() > 150, "the graph holds every file of src/ ({} found)", graph.len());
    let edges: usize = graph.values().map(|e| e.len()).sum();
    assert!(edges > 400, "and their imports ({edges} found)");
    let found = cycles(&graph);
    assert!(found.is_empty(), "import cycles (files that reach themselves):\n{found:#?}");
}

#[test]
fn the_graph_check_finds_a_cycle_and_reads_use_trees() {
    assert_eq!(
        use_paths("super::{audit::{self, NewEntry}, caller::Caller as C}"),
        vec!["super::audit::self", "super::audit::NewEntry", "super::caller::Caller"]
    );
    let code = code_of("use a::b; // crate::x::y\nlet s = \"crate::z\"; f(crate::server::state::X, '\"');");
    assert_eq!(named_paths(&code), vec!["a::b", "crate::server::state::X"]);
    let files: std::collections::BTreeMap<Vec<String>, PathBuf> =
        [vec!["server"], vec!["server", "state"], vec!["server", "rollout"]]
            .into_iter()
            .map(|m| (m.into_iter().map(String::from).collect(), PathBuf::new()))
            .collect();
    let from = ["server".to_string(), "rollout".to_string()];
    assert_eq!(resolve(&from, "super::state::AppState", &files), Some(vec!["server".into(), "state".into()]));
    let m = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
    let mut g = Graph::new();
    g.entry(m("server/a")).or_default().insert(m("server/b"));
    g.entry(m("server/b")).or_default().insert(m("server/c"));
    g.entry(m("server/c")).or_default().insert(m("server/a"));
    g.entry(m("server/d")).or_default().insert(m("server/a"));
    assert_eq!(cycles(&g), vec![vec!["server/a", "server/b", "server/c"]]);
}

/// The modules `dir` (under `src/server`) names from `others`, by file.
fn naming_from(dir: &str, others: &[&str]) -> Vec<String> {
    import_graph()
        .into_iter()
        .filter(|(from, _)| from.len() >= 2 && from[0] == "server" && from[1] == dir)
        .flat_map(|(from, to)| {
            to.into_iter()
                .filter(|t| t.len() >= 2 && t[0] == "server" && others.contains(&t[1].as_str()))
                .map(move |t| format!("{} -> {}", from.join("/"), t.join("/")))
        })
        .collect()
}

#[test]
fn notify_only_collects_it_imports_nothing_from_the_autopilot_or_the_rollback() {
    let found = naming_from("notify", &["autopilot", "rollback"]);
    assert!(found.is_empty(), "notify/ tells what the domains offer (conditions/), it does not read them:\n{found:#?}");
}

#[test]
fn no_domain_reads_another_domains_store() {
    let mut found = Vec::new();
    for (from, to) in import_graph() {
        for t in to {
            let store_of = |d: &str| t.len() >= 3 && t[0] == "server" && t[1] == d && t[2] == "store";
            for domain in ["autopilot", "rollback", "notify"] {
                if store_of(domain) && from.get(1).map(String::as_str) != Some(domain) {
                    found.push(format!("{} -> {}", from.join("/"), t.join("/")));
                }
            }
        }
    }
    assert!(found.is_empty(), "a domain offers facts through its interface (facts.rs), not its SQL:\n{found:#?}");
}

/// Each function of `text` that has a body, with its first line number and its length in lines
/// (from `fn` to the closing brace at the same indentation, as rustfmt lays them out).
fn function_lengths(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let after_keywords = ["pub(crate) ", "pub(super) ", "pub ", "async ", "const ", "unsafe "]
            .iter()
            .fold(trimmed, |t, k| t.strip_prefix(k).unwrap_or(t));
        let after_keywords =
            ["async ", "const ", "unsafe "].iter().fold(after_keywords, |t, k| t.strip_prefix(k).unwrap_or(t));
        let Some(rest) = after_keywords.strip_prefix("fn ") else { continue };
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        // The signature ends at the first line ending with `{` (a body) or `;` (a declaration).
        let Some(open) = (i..lines.len()).find(|&j| {
            let l = lines[j].trim_end();
            l.ends_with('{') || l.ends_with(';')
        }) else {
            continue;
        };
        if lines[open].trim_end().ends_with(';') {
            continue;
        }
        let closing = (open..lines.len()).find(|&j| {
            let l = lines[j];
            l.len() - l.trim_start().len() == indent && l.trim_start().starts_with('}')
        });
        if let Some(end) = closing {
            out.push((name, i + 1, end - i + 1));
        }
    }
    out
}

#[test]
fn no_file_in_src_over_450_lines_and_no_function_over_80() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut functions = 0;
    for file in sources(&root) {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().display().to_string();
        let lines = text.lines().count();
        if lines > 450 {
            found.push(format!("{shown}: {lines} lines"));
        }
        for (name, at, length) in function_lengths(&text) {
            functions += 1;
            if length > 80 {
                found.push(format!("{shown}:{at}: fn {name} is {length} lines"));
            }
        }
    }
    assert!(functions > 1000, "every function is measured ({functions} found)");
    assert!(found.is_empty(), "split along the code's own lines:\n{}", found.join("\n"));
}

#[test]
fn function_lengths_are_measured_from_fn_to_its_closing_brace() {
    let code = "trait T {\n    fn declared(&self) -> u8;\n}\n\npub async fn body(\n    a: u8,\n) -> u8 {\n    let x = a;\n    x\n}\n";
    assert_eq!(function_lengths(code), vec![("body".to_string(), 5, 6)]);
}
