//! The invariants both targets check on whatever the validator accepts.

use std::fs;
use std::path::{Path, PathBuf};

use intake_archive::{ExtractLimits, SafeArchive, testkit};

/// Small limits, so that accepted inputs extract quickly.
pub const LIMITS: ExtractLimits = ExtractLimits {
    max_entries: 1000,
    max_total_bytes: 64 << 20,
    max_entry_bytes: 16 << 20,
    max_ratio: 200,
};

/// A scratch directory per process, in memory where the machine has one.
pub fn scratch() -> PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("intake-archive-fuzz-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Validates `bytes`; if accepted, checks names, sizes and extraction.
pub fn check(bytes: &[u8], dir: &Path) {
    let path = dir.join("input.zip");
    fs::write(&path, bytes).expect("write input");
    let Ok(mut archive) = SafeArchive::open(&path, LIMITS) else {
        return;
    };
    // Every byte accounted for, read independently of the validator.
    testkit::assert_accounted_for(bytes);
    let entries = archive.entries().to_vec();
    assert!(entries.len() as u64 <= LIMITS.max_entries);
    let mut declared = 0u64;
    for entry in &entries {
        let name = &entry.name;
        assert!(!name.is_empty() && !name.starts_with('/') && !name.ends_with('/'));
        testkit::assert_safe_name(name);
        assert!(entry.declared_size <= LIMITS.max_entry_bytes);
        // Every entry's data lies inside the file, entries do not overlap.
        declared += entry.compressed_size;
        assert!(
            declared <= bytes.len() as u64,
            "compressed data exceed the file"
        );
    }
    let out = dir.join("out");
    for entry in &entries {
        match archive.extract_to(entry, &out) {
            Ok(file) => {
                assert_eq!(file.size, entry.declared_size);
                let written = fs::read(&out).expect("read output");
                assert_eq!(written.len() as u64, file.size);
            }
            // Corrupt data is found only when inflating; a refusal must be final and
            // leave no output behind.
            Err(e) => {
                assert!(e.is_final(), "{e}");
                assert!(!out.exists(), "partial output left behind");
            }
        }
    }
}
