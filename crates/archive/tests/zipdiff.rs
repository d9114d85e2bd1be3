//! The ZipDiff corpus: 5,927 archives that at least two widely used ZIP parsers read
//! differently, in 14 ambiguity types (`../shared/zipdiff/README.md`). The validator
//! must refuse every one of them; one test per type names what it is about.
//!
//! The corpus sits beside the repository (`<repo>/../shared/zipdiff`, read only in CI),
//! or where `INTAKE_ZIPDIFF_DIR` points. Missing, the tests skip, except under
//! `CI=true`, where they fail.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flate2::read::GzDecoder;

mod common;

/// The corpus unpacked once per test process: `constructions/<type>/<type>-<n>.zip`.
fn corpus() -> Option<&'static Path> {
    static UNPACKED: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    UNPACKED
        .get_or_init(|| {
            let dir = std::env::var_os("INTAKE_ZIPDIFF_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/zipdiff")
                });
            let tarball = dir.join("constructions.tar.gz");
            if !tarball.is_file() {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "the ZipDiff corpus is missing at {} (CI=true)",
                    tarball.display()
                );
                eprintln!("skipping: no ZipDiff corpus at {}", tarball.display());
                return None;
            }
            let temp = tempfile::tempdir().expect("temp dir");
            let file = File::open(&tarball).expect("open the corpus");
            tar::Archive::new(GzDecoder::new(file))
                .unpack(temp.path())
                .expect("unpack the corpus");
            let root = temp.path().join("constructions");
            Some((temp, root))
        })
        .as_ref()
        .map(|(_, root)| root.as_path())
}

/// Opens every construction of `kind`: each must be refused, or be read exactly the
/// same way (same files, same bytes) by Python's `zipfile`, `bsdtar` (seekable and
/// from a pipe) and `unzip`. Panics listing every construction that is neither.
/// Returns how many constructions were refused and how many accepted.
fn assert_refused_or_unambiguous(kind: &str) -> (usize, usize) {
    let Some(root) = corpus() else {
        return (0, 0);
    };
    let mut paths: Vec<PathBuf> = fs::read_dir(root.join(kind))
        .expect("a directory per type")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "zip"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no constructions of type {kind}");
    let accepted: Vec<(PathBuf, common::View)> = paths
        .iter()
        .filter_map(|p| common::our_view(p).ok().map(|view| (p.clone(), view)))
        .collect();
    if accepted.is_empty() || !common::have_readers() {
        if !accepted.is_empty() {
            eprintln!(
                "{kind}: {} accepted constructions not cross-checked",
                accepted.len()
            );
        }
        return (paths.len() - accepted.len(), accepted.len());
    }
    let ambiguous: BTreeMap<String, Vec<String>> = accepted
        .iter()
        .filter_map(|(path, view)| {
            let differences = common::differences(path, view);
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            (!differences.is_empty()).then_some((file, differences))
        })
        .collect();
    assert!(
        ambiguous.is_empty(),
        "{} of {} constructions of type {kind} accepted with a view another reader does not share: {ambiguous:#?}",
        ambiguous.len(),
        paths.len()
    );
    (paths.len() - accepted.len(), accepted.len())
}

/// For the types where every construction must be refused outright.
fn assert_all_refused(kind: &str) {
    let (_, accepted) = assert_refused_or_unambiguous(kind);
    assert_eq!(accepted, 0, "constructions of type {kind} accepted");
}

#[test]
fn a1_compression_method_differs_between_headers() {
    assert_all_refused("a1");
}

#[test]
fn a2_sizes_differ_between_headers_descriptor_and_zip64_fields() {
    // A few variants have every size field agreeing (the base cases the generator
    // varies from): accepted, and read alike by every reader.
    assert_refused_or_unambiguous("a2");
}

#[test]
fn a3_name_differs_between_headers_unicode_path_and_utf8_flag() {
    assert_all_refused("a3");
}

#[test]
fn a4_directory_or_file_by_slash_backslash_or_attributes() {
    // `test/` with no attributes at all is a directory by its slash for every reader.
    assert_refused_or_unambiguous("a4");
}

#[test]
fn a5_encryption_flag_in_one_header_only() {
    assert_all_refused("a5");
}

#[test]
fn b1_duplicate_names() {
    assert_all_refused("b1");
}

#[test]
fn b2_special_bytes_in_names() {
    // Ordinary printable ASCII (`a b`, `a#b`, `a.b`...) is accepted, and must read alike.
    assert_refused_or_unambiguous("b2");
}

#[test]
fn b3_non_canonical_paths() {
    assert_all_refused("b3");
}

#[test]
fn b4_names_differing_only_in_case() {
    assert_all_refused("b4");
}

#[test]
fn c1_local_header_stream_differs_from_central_directory() {
    assert_all_refused("c1");
}

#[test]
fn c2_several_end_of_central_directory_records() {
    assert_all_refused("c2");
}

#[test]
fn c3_entry_counts() {
    assert_all_refused("c3");
}

#[test]
fn c4_central_directory_offset() {
    assert_all_refused("c4");
}

#[test]
fn c5_zip64_end_record_and_locator() {
    assert_all_refused("c5");
}
