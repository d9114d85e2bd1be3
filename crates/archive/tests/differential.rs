//! Differential test: every archive the validator accepts among the test kit's crafted
//! archives, the fuzz seeds (`fuzz/seeds`) and whatever the raw-bytes fuzzer has added to
//! its corpus (`fuzz/corpus/validate`, after `.ci/run`'s fuzzing step) must be read exactly
//! alike, same files and bytes, by Python's `zipfile`, `bsdtar` (seekable and from a
//! pipe) and `unzip`.

use std::fs;
use std::path::{Path, PathBuf};

use intake_archive::testkit;

mod common;

/// Files of `dir` (not recursive), if it exists.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Checks every accepted archive among `paths`; returns how many were accepted.
fn check_accepted(paths: &[PathBuf]) -> usize {
    let mut ambiguous = Vec::new();
    let mut accepted = 0;
    for path in paths {
        let Ok(view) = common::our_view(path) else {
            continue;
        };
        accepted += 1;
        let differences = common::differences(path, &view);
        if !differences.is_empty() {
            ambiguous.push((path.display().to_string(), differences));
        }
    }
    assert!(
        ambiguous.is_empty(),
        "accepted, but read differently: {ambiguous:#?}"
    );
    accepted
}

#[test]
fn crafted_archives_are_refused_or_read_alike() {
    if !common::have_readers() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let paths: Vec<PathBuf> = testkit::crafted()
        .into_iter()
        .map(|(name, bytes)| {
            let path = dir.path().join(format!("{name}.zip"));
            fs::write(&path, bytes).expect("write");
            path
        })
        .collect();
    let accepted = check_accepted(&paths);
    // The well-formed ones, at least, are accepted.
    assert!(accepted >= 7, "only {accepted} accepted");
}

#[test]
fn fuzz_seeds_and_corpora_are_refused_or_read_alike() {
    if !common::have_readers() {
        return;
    }
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut paths = files_in(&fuzz.join("seeds"));
    assert!(!paths.is_empty(), "no seeds in {}", fuzz.display());
    // The raw-bytes target's corpus holds archives; the mutation target's, patches.
    paths.extend(files_in(&fuzz.join("corpus/validate")));
    let accepted = check_accepted(&paths);
    eprintln!(
        "{accepted} of {} fuzz inputs accepted and read alike",
        paths.len()
    );
}
