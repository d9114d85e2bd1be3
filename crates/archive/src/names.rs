//! Entry names: what makes a name safe to become a record name, and when two names
//! count as the same file.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

use crate::validate::Scanned;
use crate::{ExtractError, MAX_NAME_BYTES};

/// Refuses names that are equal after NFC normalisation and case folding.
pub(crate) fn check_duplicates(scanned: &[Scanned]) -> Result<(), ExtractError> {
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(scanned.len());
    for (at, s) in scanned.iter().enumerate() {
        if let Some(first) = seen.insert(dedupe_key(&s.name), at) {
            return Err(ExtractError::DuplicateName {
                first: scanned[first].name.clone(),
                second: s.name.clone(),
            });
        }
    }
    Ok(())
}

/// Why `name` is unsafe, if it is. Names are never used as paths here, but they become
/// record names that people and other tools will treat as paths.
pub(crate) fn check_path(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return Err("it is longer than 4096 bytes");
    }
    if name.chars().any(char::is_control) {
        return Err("it contains control characters");
    }
    if name.contains('\\') {
        return Err("it contains backslashes (Windows path separators)");
    }
    if name.starts_with('/') {
        return Err("it is an absolute path");
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err("it starts with a drive letter");
    }
    if name.split('/').any(|part| part == "..") {
        return Err("it climbs out of the archive with '..'");
    }
    if name.rsplit('/').next() == Some(".") {
        return Err("it does not end in a file name");
    }
    Ok(())
}

/// Last component of `name` that names something (skips empty and `.` components).
pub(crate) fn base_name(name: &str) -> &str {
    name.rsplit('/')
        .find(|part| !part.is_empty() && *part != ".")
        .unwrap_or("")
}

/// Key under which two names count as the same file: `.` and empty components
/// dropped, NFC, then case folded. `to_uppercase().to_lowercase()` approximates full
/// Unicode case folding (`ß` and `SS` meet as `ss`); NFC again afterwards because
/// case mapping can denormalise.
fn dedupe_key(name: &str) -> String {
    let canonical = name
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect::<Vec<_>>()
        .join("/");
    let nfc: String = canonical.nfc().collect();
    nfc.to_uppercase().to_lowercase().nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::refusal;
    use crate::testkit::{self, layout};

    #[test]
    fn refuses_unsafe_names() {
        for (zip, name) in [
            (testkit::zip_traversal(), "../evil.txt"),
            (testkit::zip_absolute(), "/etc/cron.d/evil"),
            (testkit::zip_backslash(), "..\\evil.txt"),
            (testkit::zip_drive_letter(), "C:/Windows/evil.txt"),
        ] {
            let e = refusal(&zip);
            assert_eq!(e.code(), "ERR_ARCHIVE_UNSAFE_PATH", "{name}: {e}");
            assert!(e.to_string().contains(&format!("{name:?}")), "{e}");
            assert!(e.is_final());
        }
    }

    #[test]
    fn refuses_control_characters_in_names() {
        let mut zip = testkit::zip_of(&[("a_b.txt", b"x")]);
        layout(&zip)[0].set_name(&mut zip, b"a\nb.txt");
        assert_eq!(refusal(&zip).code(), "ERR_ARCHIVE_UNSAFE_PATH");
    }

    #[test]
    fn check_path_rules() {
        for ok in [
            "a.txt",
            "dir/a.txt",
            "dir/",
            "./a.txt",
            "caf\u{e9}.txt",
            "a..b",
            "...",
            "x/C:y",
        ] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        assert!(check_path(&"a".repeat(MAX_NAME_BYTES)).is_ok());
        assert!(check_path(&"a".repeat(MAX_NAME_BYTES + 1)).is_err());
        for bad in [
            "", "/a", "../a", "a/../b", "a/..", "C:a", "c:/a", "a\\b", "a\0b", "a/.", ".",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refuses_duplicates_after_case_folding_and_normalisation() {
        let e = refusal(&testkit::zip_duplicate_casefold());
        assert_eq!(e.code(), "ERR_ARCHIVE_DUPLICATE_NAME");
        assert!(e.to_string().contains("\"report.TXT\""), "{e}");
        assert_eq!(
            refusal(&testkit::zip_duplicate_unicode()).code(),
            "ERR_ARCHIVE_DUPLICATE_NAME"
        );
        let e = refusal(&testkit::zip_duplicate_exact());
        assert_eq!(e.code(), "ERR_ARCHIVE_DUPLICATE_NAME");
        assert!(e.to_string().contains("\"a.txt\""), "{e}");
    }

    #[test]
    fn dedupe_keys() {
        assert_eq!(dedupe_key("Stra\u{df}e.txt"), dedupe_key("STRASSE.TXT"));
        assert_eq!(
            dedupe_key("\u{212a}.txt"),
            dedupe_key("k.txt"),
            "Kelvin sign"
        );
        assert_eq!(dedupe_key("./a//b.txt"), dedupe_key("a/b.txt"));
        assert_eq!(dedupe_key("dir/"), dedupe_key("dir"));
        assert_ne!(dedupe_key("a.txt"), dedupe_key("b.txt"));
    }

    #[test]
    fn checks_names_from_unicode_path_fields_too() {
        let e = refusal(&testkit::zip_unicode_path_traversal());
        assert_eq!(e.code(), "ERR_ARCHIVE_UNSAFE_PATH", "{e}");
        assert!(e.to_string().contains("../evil.txt"), "{e}");
    }
}
