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
