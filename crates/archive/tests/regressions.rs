//! Inputs the fuzzers found, kept as regression tests: each is refused with the code
//! that now covers it. `.ci/run`'s fuzzing step feeds new finds to the differential
//! test; a find that shows a difference goes here, under `tests/regressions/`.

use std::path::Path;

use intake_archive::{ExtractLimits, SafeArchive, testkit};

/// Each regression input and the code it must be refused with.
const CASES: [(&str, &str); 1] = [
    // Accepted before, read by bsdtar, refused by Python (`zip file version 23.4`) and
    // unzip: its central header's "version needed to extract" was 234.
    ("version-needed-23.4.zip", "ERR_ARCHIVE_UNSUPPORTED_VERSION"),
];

#[test]
fn every_regression_input_is_refused_with_its_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        files,
        CASES.len(),
        "each file in {} needs a case",
        dir.display()
    );
    for (file, code) in CASES {
        match SafeArchive::open(&dir.join(file), ExtractLimits::default()) {
            Ok(_) => panic!("{file} is accepted"),
            Err(e) => assert_eq!(e.code(), code, "{file}: {e}"),
        }
    }
}

/// Above 4.5 in either header is refused; 4.5 itself (ZIP64) is not.
#[test]
fn version_needed_above_4_5_is_refused_in_either_header() {
    let zip = testkit::zip_of(&[("a.txt", b"hello")]);
    let central = zip
        .windows(4)
        .position(|w| w == b"PK\x01\x02")
        .expect("a central header");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.zip");
    for (offset, version, refused) in [
        (central + 6, 45u16, false),
        (central + 6, 46, true),
        (4, 46, true),
        (central + 6, 0x0114, false), // the high byte is not part of the version
    ] {
        let mut patched = zip.clone();
        patched[offset..offset + 2].copy_from_slice(&version.to_le_bytes());
        if offset == central + 6 && version <= 45 {
            patched[4..6].copy_from_slice(&version.to_le_bytes());
        }
        std::fs::write(&path, &patched).unwrap();
        let result = SafeArchive::open(&path, ExtractLimits::default());
        match (result, refused) {
            (Err(e), true) => assert_eq!(e.code(), "ERR_ARCHIVE_UNSUPPORTED_VERSION", "{e}"),
            (Ok(_), false) => {}
            (Err(e), false) => panic!("version {version:#x} at {offset}: refused: {e}"),
            (Ok(_), true) => panic!("version {version:#x} at {offset}: accepted"),
        }
    }
}
