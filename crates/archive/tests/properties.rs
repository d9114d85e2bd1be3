//! Property tests of the validator's invariants, in the normal suite (the fuzz targets
//! in `fuzz/` check the same on far more inputs). On every accepted archive: its
//! entries never overlap and cover every byte (`testkit::assert_accounted_for`, read
//! independently of the validator), names are safe, sizes within the limits, and
//! extraction yields exactly the declared bytes. And:
//! - archives written by the `zip` crate from any set of canonical names and contents
//!   are accepted, and extraction gives back exactly those names and bytes;
//! - any single-byte change or truncation of such an archive, and any patch sequence
//!   of the structure-aware fuzz target, is refused or keeps those invariants.

use std::collections::HashSet;
use std::fs;

use intake_archive::{ExtractLimits, SafeArchive, testkit};
use proptest::prelude::*;

/// A canonical path: 1 to 3 components of letters, digits, `-`, `_`, one dot inside.
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9_-]{1,8}(\\.[a-z]{1,3})?", 1..4).prop_map(|parts| parts.join("/"))
}

/// Up to 8 files with distinct names (also distinct case-insensitively, and no file
/// is another's directory).
fn files() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    prop::collection::vec((name(), prop::collection::vec(any::<u8>(), 0..2000)), 0..8).prop_map(
        |files| {
            let mut seen = HashSet::new();
            let names: Vec<String> = files.iter().map(|(n, _)| n.to_lowercase()).collect();
            files
                .into_iter()
                .filter(|(n, _)| {
                    let key = n.to_lowercase();
                    let is_parent = names.iter().any(|o| o.starts_with(&format!("{key}/")));
                    !is_parent && seen.insert(key)
                })
                .collect()
        },
    )
}

fn write(dir: &tempfile::TempDir, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join("upload.zip");
    fs::write(&path, bytes).expect("write");
    path
}

/// Opens `bytes`; if accepted, checks the invariants and returns the files.
fn checked_view(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = ExtractLimits::default();
    let mut archive = SafeArchive::open(&write(&dir, bytes), limits).ok()?;
    testkit::assert_accounted_for(bytes);
    assert!(archive.entries().len() as u64 <= limits.max_entries);
    let mut view = Vec::new();
    for entry in archive.entries().to_vec() {
        let name = &entry.name;
        testkit::assert_safe_name(name);
        assert!(entry.declared_size <= limits.max_entry_bytes);
        let out = dir.path().join("out");
        match archive.extract_to(&entry, &out) {
            Ok(file) => {
                let data = fs::read(&out).expect("read");
                assert_eq!(data.len() as u64, entry.declared_size);
                assert_eq!(file.size, entry.declared_size);
                view.push((name.clone(), data));
            }
            Err(e) => {
                assert!(e.is_final(), "{e}");
                assert!(!out.exists());
            }
        }
    }
    Some(view)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn written_archives_round_trip(files in files(), stored in any::<bool>()) {
        let pairs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let zip = if stored { testkit::zip_stored(&pairs) } else { testkit::zip_of(&pairs) };
        let view = checked_view(&zip).expect("a written archive is accepted");
        prop_assert_eq!(view, files);
    }

    #[test]
    fn changed_archives_are_refused_or_still_safe(
        files in files(),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
        truncate in any::<bool>(),
    ) {
        let pairs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let mut zip = testkit::zip_of(&pairs);
        let at = at.index(zip.len());
        if truncate {
            zip.truncate(at);
        } else {
            zip[at] = value;
        }
        checked_view(&zip);
    }

    #[test]
    fn patched_archives_are_refused_or_still_safe(
        input in prop::collection::vec(any::<u8>(), 1..41),
    ) {
        let zip = testkit::mutated(&testkit::mutation_bases(), &input).expect("non-empty input");
        checked_view(&zip);
    }

    /// Not vacuous: every base archive of the patch target is accepted as it is.
    #[test]
    fn unpatched_bases_are_accepted(choice in any::<u8>()) {
        let zip = testkit::mutated(&testkit::mutation_bases(), &[choice]).expect("a base");
        prop_assert!(checked_view(&zip).is_some());
    }
}

/// The layout check the properties rely on can fail: bytes after the end record or
/// before the first entry are found.
#[test]
fn the_layout_check_finds_unaccounted_bytes() {
    let zip = testkit::zip_stored(&[("a.txt", b"hello".as_slice()), ("b.txt", b"world")]);
    testkit::assert_accounted_for(&zip);
    let mut trailing = zip.clone();
    trailing.push(0);
    let mut prefixed = vec![0u8; 4];
    prefixed.extend_from_slice(&zip);
    for bad in [trailing, prefixed] {
        assert!(std::panic::catch_unwind(|| testkit::assert_accounted_for(&bad)).is_err());
    }
}
