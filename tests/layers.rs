//! The layers of `src/` import only downwards (docs/DESIGN.md, "Layers"): a folder or file
//! may name, through `crate::`, only modules of a lower rank. Modules of one rank (the core
//! and the transport; the state machine and storage) do not know each other: the runtime
//! carries what passes between them.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// Every top-level module of `src/` and its rank; higher ranks sit above lower ones.
const RANKS: &[(&str, u8)] = &[
    ("binding", 6),
    ("runtime", 5),
    ("core", 4),
    ("operations", 4),
    ("transport", 4),
    ("state_machine", 3),
    ("storage", 3),
    ("config", 2),
    ("logging", 1),
    ("clock", 0),
    ("error", 0),
    ("ids", 0),
    ("limits", 0),
    ("membership", 0),
    ("peer_messages", 0),
    ("sync", 0),
];

/// Stands for a grouped import from the crate root: only the top layer may use it.
const ROOT: &str = "(the crate root)";

fn rank(module: &str) -> Option<u8> {
    RANKS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// The top-level modules a source file names through `crate::`, outside comments.
fn imports(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::{...}`: the crate root's public API, which re-exports every layer.
            found.insert(if name.is_empty() {
                ROOT.to_string()
            } else {
                name
            });
        }
    }
    found
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_import_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    files(&src, &mut sources);
    let mut upward = Vec::new();
    for path in &sources {
        let relative = path.strip_prefix(&src).unwrap();
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = module.trim_end_matches(".rs").to_string();
        if module == "lib" {
            continue;
        }
        let own = rank(&module).unwrap_or_else(|| panic!("src/{module} has no rank in RANKS"));
        for name in imports(&fs::read_to_string(path).unwrap()) {
            if name == module {
                continue;
            }
            // Re-exports at the crate root (`crate::Error`, `crate::start`) are named by
            // what they re-export.
            let target = match name.as_str() {
                ROOT => "binding",
                "Error" | "Result" => "error",
                "Config" => "config",
                "start" | "NodeHandle" | "Node" => "runtime",
                "Event" | "Role" | "Status" | "MemberView" | "Health" => "core",
                "MembershipChange" => "membership",
                other => other,
            };
            let theirs = rank(target).unwrap_or_else(|| panic!("unknown module crate::{name}"));
            if (theirs >= own && target != module) || (name == ROOT && module != "binding") {
                upward.push(format!("{} imports crate::{name}", relative.display()));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not point down:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_engine_never_names_napi() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    files(&src, &mut sources);
    for path in sources {
        if path.starts_with(src.join("binding")) || path.ends_with("lib.rs") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("napi"), "{} names napi", path.display());
    }
}
