//! Pins the layering of `docs/architecture.md`: every `crate::` path in a module of the library
//! names a module of the same layer or of a layer below, and every module has a layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layer of each top-level module, from the table in `docs/architecture.md`.
fn layers(architecture: &str) -> BTreeMap<String, usize> {
    let table = architecture
        .split("## Layers")
        .nth(1)
        .and_then(|rest| rest.split("```text").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("docs/architecture.md has a ```text table under ## Layers");
    let mut layers = BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with('L')) {
        let (level, rest) = line.split_once(char::is_whitespace).expect("`L<n>  modules  what`");
        let level: usize = level[1..].parse().expect("a layer number after L");
        let modules = rest.trim_start().split("  ").next().expect("a module list");
        for module in modules.split(',') {
            layers.insert(module.trim().to_owned(), level);
        }
    }
    layers
}

/// The top-level modules a source text names through `crate::` paths, outside comments; a
/// capitalised name is a path through the crate root, which hides the module it comes from.
fn named_modules(source: &str) -> Vec<String> {
    let mut named = Vec::new();
    for line in source.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                None => vec![rest],
            };
            for name in names {
                let name: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    named.push(name);
                }
            }
        }
    }
    named
}

/// The violations of one module's source: `(named, why)`.
fn violations(module: &str, source: &str, layers: &BTreeMap<String, usize>) -> Vec<String> {
    let Some(&own) = layers.get(module) else {
        return vec![format!("module `{module}` has no layer in docs/architecture.md")];
    };
    let mut found = Vec::new();
    for named in named_modules(source) {
        // The derive macro, re-exported at the root so that the crate can derive its own models.
        if named == "ActiveRecord" {
            continue;
        }
        match layers.get(&named) {
            Some(&layer) if layer <= own => {}
            Some(&layer) => found.push(format!(
                "`{module}` (L{own}) uses `crate::{named}` (L{layer}): an arrow pointing up"
            )),
            None if named.starts_with(char::is_uppercase) => found.push(format!(
                "`{module}` uses `crate::{named}` through the crate root: name the module it lives in"
            )),
            None => found.push(format!("`{module}` uses `crate::{named}`, which has no layer")),
        }
    }
    found
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_imports_only_its_layer_and_below() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = std::fs::read_to_string(root.join("../docs/architecture.md")).unwrap();
    let layers = layers(&architecture);
    let src = root.join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs");
        if module == "lib" {
            continue; // the crate root re-exports every layer
        }
        let source = std::fs::read_to_string(&file).unwrap();
        found.extend(
            violations(module, &source, &layers)
                .into_iter()
                .map(|v| format!("{}: {v}", relative.display())),
        );
    }
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_arrows_pointing_up_and_paths_through_the_root() {
    let layers = layers("## Layers\n```text\nL0  error  x\nL1  value, backend  y\nL2  transaction  z\n```\n");
    assert_eq!(layers["backend"], 1);
    let source = "use crate::error::Error;\n// crate::transaction in a comment\nuse crate::{transaction::Tx, value};\nfn f() { crate::Tx::new(); }\n";
    let found = violations("value", source, &layers);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("`crate::transaction` (L2)"), "{found:?}");
    assert!(found[1].contains("through the crate root"), "{found:?}");
    assert_eq!(violations("unknown", "", &layers).len(), 1);
}
