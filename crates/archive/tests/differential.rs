//! Differential test: every archive the validator accepts among the test kit's crafted
//! archives, the fuzz seeds (`fuzz/seeds`) and whatever the fuzzers have added to their
//! corpora after `.ci/run`'s fuzzing step (`fuzz/corpus/validate` holds archives,
//! `fuzz/corpus/validate_mutated` patch sequences, replayed here into the archives they
//! stand for) must be read exactly alike, same files and bytes, by Python's `zipfile`,
//! `bsdtar` (seekable and from a pipe) and `unzip`.

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
    paths.extend(files_in(&fuzz.join("corpus/validate")));
    // The structure-aware target's inputs are patches: replay them into archives.
    let replayed = tempfile::tempdir().expect("temp dir");
    let bases = testkit::mutation_bases();
    for (i, input) in files_in(&fuzz.join("corpus/validate_mutated"))
        .iter()
        .enumerate()
    {
        let input = fs::read(input).expect("read corpus input");
        if let Some(zip) = testkit::mutated(&bases, &input) {
            let path = replayed.path().join(format!("mutated-{i}.zip"));
            fs::write(&path, zip).expect("write");
            paths.push(path);
        }
    }
    let accepted = check_accepted(&paths);
    eprintln!(
        "{accepted} of {} fuzz inputs accepted and read alike",
        paths.len()
    );
}
