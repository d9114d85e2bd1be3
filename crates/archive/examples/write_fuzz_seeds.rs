//! `cargo run -p intake-archive --features testkit --example write_fuzz_seeds -- DIR`:
//! writes the test kit's archives (well-formed and hostile) into DIR, as the seed
//! corpus of the fuzz targets in `fuzz/`.

use std::path::PathBuf;

use intake_archive::testkit;

fn main() {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .expect("usage: write_fuzz_seeds DIR"),
    );
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        (
            "deflated",
            testkit::zip_of(&[("a.txt", b"hello hello"), ("d/b.bin", &[1; 300])]),
        ),
        (
            "stored",
            testkit::zip_stored(&[("a.txt", b"hello"), ("empty", b"")]),
        ),
        ("empty", testkit::zip_of(&[])),
        (
            "directory-and-nested",
            testkit::zip_with_directory_and_nested(),
        ),
        (
            "unicode-path-same",
            testkit::zip_unicode_path(&[("same.txt", "same.txt")]),
        ),
        (
            "unicode-path-other",
            testkit::zip_unicode_path(&[("a.pdf", "a.exe")]),
        ),
        ("traversal", testkit::zip_traversal()),
        ("absolute", testkit::zip_absolute()),
        ("backslash", testkit::zip_backslash()),
        ("symlink", testkit::zip_symlink()),
        ("duplicate", testkit::zip_duplicate_exact()),
        ("casefold", testkit::zip_duplicate_casefold()),
        ("encrypted", testkit::zip_encrypted()),
        ("method", testkit::zip_unsupported_method()),
        ("overlap", testkit::zip_overlap()),
        ("past-directory", testkit::zip_data_past_directory()),
        ("header-mismatch", testkit::zip_header_mismatch()),
        ("lying-size", testkit::zip_lying_size()),
        ("entries", testkit::zip_too_many_entries(5)),
        ("device-name", testkit::zip_with_name("aux.txt")),
        ("bidi", testkit::zip_with_name("a\u{202e}txt.exe")),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(format!("{name}.zip")), bytes).expect("write seed");
    }
}
