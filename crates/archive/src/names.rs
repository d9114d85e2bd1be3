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

/// Why `name`, though safe, is not canonical, if it is not: characters that show a
/// name other than the one stored (bidi and invisible controls), or that Windows and
/// other systems drop, refuse or give a meaning (`:`, reserved characters, trailing
/// dots and spaces, device names), or path components that normalise away.
pub(crate) fn check_canonical(name: &str) -> Result<(), &'static str> {
    for c in name.chars() {
        if is_bidi_control(c) {
            return Err("it contains a bidirectional text control character");
        }
        if is_invisible(c) {
            return Err("it contains a zero-width or otherwise invisible character");
        }
        if c == ':' {
            return Err("it contains ':' (an NTFS alternate data stream or an old Mac separator)");
        }
        if matches!(c, '<' | '>' | '"' | '|' | '?' | '*') {
            return Err("it contains a character that Windows does not allow in names");
        }
    }
    let path = name.strip_suffix('/').unwrap_or(name);
    for part in path.split('/') {
        if part.is_empty() {
            return Err("it has an empty path component");
        }
        if part == "." {
            return Err("it has a '.' path component");
        }
        if part.ends_with('.') || part.ends_with(' ') {
            return Err("a path component ends in a dot or a space, which Windows drops");
        }
        if is_device_name(part) {
            return Err("it uses a Windows device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9)");
        }
    }
    Ok(())
}

/// Characters that reorder how the text around them is displayed.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Format characters, fillers and selectors that display as nothing.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2065}'
            | '\u{206A}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Whether a path component names a Windows device: the part before the first dot,
/// trailing spaces ignored, is one of the reserved names in any case (`aux.txt` opens
/// the AUX device on Windows).
fn is_device_name(part: &str) -> bool {
    let stem = part.split('.').next().unwrap_or(part).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => {
            let (prefix, digit) = upper.split_at(upper.len().min(3));
            matches!(prefix, "COM" | "LPT")
                && matches!(
                    digit,
                    "1" | "2"
                        | "3"
                        | "4"
                        | "5"
                        | "6"
                        | "7"
                        | "8"
                        | "9"
                        | "\u{B9}"
                        | "\u{B2}"
                        | "\u{B3}"
                )
        }
    }
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
    fn canonical_name_rules() {
        for ok in [
            "a.txt",
            "dir/",
            "dir/a.txt",
            "caf\u{e9}.txt",
            "a..b",
            "console.txt",
            "com10.txt",
            "lpt.txt",
            "\u{5370}\u{5237}.pdf",
        ] {
            assert_eq!(check_canonical(ok), Ok(()), "{ok}");
        }
        for bad in [
            "invoice\u{202e}fdp.exe",
            "a\u{2067}b",
            "a\u{200b}.txt",
            "\u{feff}a.txt",
            "a\u{ad}b",
            "file.txt:stream",
            "x/C:y",
            "a?.txt",
            "a*.txt",
            "a|b",
            "a<b>",
            "\"quoted\"",
            "CON",
            "aux.txt",
            "dir/Nul.tar.gz",
            "com1",
            "LPT9.log",
            "con .txt",
            "a.txt.",
            "a.txt ",
            "dir./a",
            "...",
            "./a.txt",
            "a/./b",
            "a//b",
            "dir//",
        ] {
            assert!(check_canonical(bad).is_err(), "{bad:?}");
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
    fn refuses_unicode_path_fields_that_rename_the_entry() {
        let e = refusal(&testkit::zip_unicode_path_traversal());
        assert_eq!(e.code(), "ERR_ARCHIVE_UNICODE_PATH", "{e}");
        assert!(e.to_string().contains("\"safe.txt\""), "{e}");
    }
}
