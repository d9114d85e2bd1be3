//! The module layout of `docs/ARCHITECTURE.md`, checked on the source tree: no
//! import cycle between top-level modules, and only the start-up (`app`, `main`)
//! imports the HTTP edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules it names as `crate::…`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut graph = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_str()
                .unwrap();
            let top = first.trim_end_matches(".rs").to_string();
            if !modules.contains(&top) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may reach anywhere.
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            let deps: &mut BTreeSet<String> = graph.entry(top.clone()).or_default();
            for line in code.lines() {
                let line = line.split("//").next().unwrap();
                for (i, _) in line.match_indices("crate::") {
                    let rest = &line[i + 7..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    let names: Vec<String> = if name.is_empty() && rest.starts_with('{') {
                        rest[1..]
                            .split(['}', ','])
                            .map(|s| s.trim().split("::").next().unwrap().to_string())
                            .collect()
                    } else {
                        vec![name]
                    };
                    for n in names {
                        if n != top && modules.contains(&n) {
                            deps.insert(n);
                        }
                    }
                }
            }
        }
    }
    graph
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(m) = todo.pop() {
        for d in graph.get(&m).into_iter().flatten() {
            if d == to {
                return true;
            }
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    false
}

#[test]
fn no_cycle_between_top_level_modules() {
    let graph = graph();
    assert!(graph.contains_key("uploads") && graph.contains_key("http"));
    let cyclic: Vec<&String> = graph.keys().filter(|m| reaches(&graph, m, m)).collect();
    assert!(
        cyclic.is_empty(),
        "modules in an import cycle: {cyclic:?}\n{graph:#?}"
    );
}

#[test]
fn only_start_up_imports_the_http_edge() {
    let graph = graph();
    let importers: Vec<&String> = graph
        .iter()
        .filter(|(m, deps)| *m != "app" && deps.contains("http"))
        .map(|(m, _)| m)
        .collect();
    assert!(importers.is_empty(), "{importers:?} import crate::http");
}

#[test]
fn the_services_know_nothing_of_the_edges() {
    let graph = graph();
    for service in [
        "uploads", "history", "db", "store", "scan", "live", "domain",
    ] {
        for edge in ["http", "ws", "state", "app"] {
            assert!(
                !reaches(&graph, service, edge),
                "{service} reaches {edge}: {graph:#?}"
            );
        }
    }
}

/// `fuzz/` compiles some of the service's parser files on their own (`#[path]`), so
/// that fuzzing them does not build the service's dependency tree: those files may
/// name nothing of the crate but each other (a top-level one as `crate::<file>::`, a
/// sibling as `super::<file>::`, where the fuzz crate mounts them too), and of their
/// parent module only the error type the fuzz crate stands in for.
#[test]
fn the_files_fuzz_compiles_on_their_own_import_nothing_of_the_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let targets = root.join("fuzz/fuzz_targets");
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(&targets).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            if let Some(path) = line
                .trim()
                .strip_prefix("#[path = \"../../src/")
                .and_then(|rest| rest.strip_suffix("\"]"))
            {
                files.insert(path.to_string());
            }
        }
    }
    for expected in [
        "protocol.rs",
        "config.rs",
        "uploads/presign_request.rs",
        "uploads/checksums.rs",
    ] {
        assert!(files.contains(expected), "{expected}: {files:?}");
    }
    // `crate::<file>::` for the top-level files the fuzz crate compiles.
    let top_level: Vec<String> = files
        .iter()
        .filter(|f| !f.contains('/'))
        .map(|f| format!("crate::{}::", f.trim_end_matches(".rs")))
        .collect();
    for file in &files {
        // `super::<file>::` for the compiled files beside this one.
        let (dir, _) = file.rsplit_once('/').unwrap_or(("", file));
        let siblings: Vec<String> = files
            .iter()
            .filter(|g| *g != file && g.rsplit_once('/').map_or("", |(d, _)| d) == dir)
            .map(|g| {
                let name = g.rsplit_once('/').map_or(g.as_str(), |(_, n)| n);
                format!("super::{}::", name.trim_end_matches(".rs"))
            })
            .collect();
        let path = root.join("src").join(file);
        // A file's own submodules (`config/schema.rs`) come along; they may name
        // their parent, which the fuzz crate mounts where the service does.
        let submodules = std::fs::read_dir(path.with_extension(""))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path());
        for (path, own) in
            std::iter::once((path.clone(), true)).chain(submodules.map(|p| (p, false)))
        {
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests are not compiled by the fuzz crate.
            let code = text.split("#[cfg(test)]").next().unwrap();
            let shown = path.strip_prefix(root).unwrap().display().to_string();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                let parent = format!("$crate::{}::", file.trim_end_matches(".rs"));
                let mut outside = line.replace(&parent, "");
                for allowed in top_level
                    .iter()
                    .chain(own.then_some(&siblings).into_iter().flatten())
                {
                    outside = outside.replace(allowed.as_str(), "");
                }
                assert!(!outside.contains("crate::"), "{shown}: {line}");
                assert!(
                    !own || !outside.contains("super::")
                        || line.trim() == "use super::HistoryError;",
                    "{shown}: {line}"
                );
            }
        }
    }
}
