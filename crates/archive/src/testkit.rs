//! Builders of ZIP archives for tests: well-formed ones and one crafted archive per
//! refusal case of [`SafeArchive`](crate::SafeArchive).
//!
//! Compiled for this crate's unit tests and, behind the `testkit` cargo feature (off
//! by default), for other crates' tests: the service's integration tests upload these
//! archives over the network, with the same builders as the unit tests. No production
//! build enables the feature.
//!
//! Where the `zip` writer cannot produce a hostile case (it has no encryption, bzip2 or
//! overlapping entries with the features we enable, and may tidy unsafe names), the
//! archive is written with a harmless stand-in and then patched byte by byte. The
//! patch helpers assume the writer's own output: no archive comment, no data
//! descriptors (the writer seeks back and fills the sizes into the local headers),
//! and, unless noted, the classic 32-bit end of central directory record.

use std::io::{Cursor, Write};

use zip::write::{FullFileOptions, SimpleFileOptions};
use zip::{CompressionMethod, ZipWriter};

/// Signature of a local file header (`PK\x03\x04`).
const LOCAL_SIG: u32 = 0x0403_4b50;
/// Signature of a central directory file header (`PK\x01\x02`).
const CENTRAL_SIG: u32 = 0x0201_4b50;
/// Signature of the classic end of central directory record (`PK\x05\x06`).
const EOCD_SIG: u32 = 0x0605_4b50;

/// A deflated archive holding `files` in order, each a regular file with mode 0644.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    write_zip(files, CompressionMethod::Deflated)
}

/// Like [`zip_of`], but every entry is stored (method 0, no compression).
pub fn zip_stored(files: &[(&str, &[u8])]) -> Vec<u8> {
    write_zip(files, CompressionMethod::Stored)
}

/// An entry named `../evil.txt`: a parent-directory traversal.
pub fn zip_traversal() -> Vec<u8> {
    zip_with_name("../evil.txt")
}

/// An entry named `/etc/cron.d/evil`: an absolute path.
pub fn zip_absolute() -> Vec<u8> {
    zip_with_name("/etc/cron.d/evil")
}

/// An entry named `..\evil.txt`: Windows separators hiding a traversal.
pub fn zip_backslash() -> Vec<u8> {
    zip_with_name("..\\evil.txt")
}

/// An entry named `C:/Windows/evil.txt`: a drive-letter path.
pub fn zip_drive_letter() -> Vec<u8> {
    zip_with_name("C:/Windows/evil.txt")
}

/// An entry whose header name is the harmless `safe.txt` but whose Info-ZIP Unicode
/// Path extra field (0x7075), which readers prefer when its CRC matches, says
/// `../evil.txt`.
pub fn zip_unicode_path_traversal() -> Vec<u8> {
    zip_unicode_path(&[("safe.txt", "../evil.txt")])
}

/// One stored entry per `(header name, Unicode Path name)`: the header says the first,
/// the Info-ZIP Unicode Path extra field (with the CRC-32 of the header name, so
/// readers that honour it use it) says the second.
pub fn zip_unicode_path(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for (header, unicode) in entries {
        // Field layout: version 1, CRC-32 of the header name, then the UTF-8 name.
        let mut field = vec![1u8];
        field.extend_from_slice(&crc32fast::hash(header.as_bytes()).to_le_bytes());
        field.extend_from_slice(unicode.as_bytes());
        let mut options = FullFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .unix_permissions(0o644);
        options
            .add_extra_field(0x7075, field, false)
            .expect("add extra field");
        w.start_file(*header, options).expect("start file");
        w.write_all(b"payload").expect("write");
    }
    w.finish().expect("finish").into_inner()
}

/// A harmless file next to a symbolic link `link` pointing at `/etc/passwd`.
pub fn zip_symlink() -> Vec<u8> {
    // The writer produces symlinks itself: Unix host, S_IFLNK in the external attributes.
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    w.start_file("readme.txt", options.unix_permissions(0o644))
        .expect("start file");
    w.write_all(b"hello").expect("write");
    w.add_symlink("link", "/etc/passwd", options)
        .expect("add symlink");
    w.finish().expect("finish").into_inner()
}

/// Two names that differ only by case: `Report.txt` and `report.TXT`.
pub fn zip_duplicate_casefold() -> Vec<u8> {
    zip_of(&[("Report.txt", b"first"), ("report.TXT", b"second")])
}

/// Two names that differ only by Unicode normalisation: `café.txt` written precomposed
/// (NFC, U+00E9) and decomposed (NFD, `e` + U+0301).
pub fn zip_duplicate_unicode() -> Vec<u8> {
    zip_of(&[("caf\u{e9}.txt", b"nfc"), ("cafe\u{301}.txt", b"nfd")])
}

/// Two central directory entries with byte-identical names.
pub fn zip_duplicate_exact() -> Vec<u8> {
    // The writer refuses a name it has already written, so write `a.txt` and `b.txt` and
    // rename the second one (in its local and central headers) to `a.txt`.
    let mut zip = zip_of(&[("a.txt", b"first"), ("b.txt", b"second")]);
    let second = layout(&zip)[1];
    second.set_name(&mut zip, b"a.txt");
    zip
}

/// An entry flagged as encrypted (general purpose flag bit 0).
pub fn zip_encrypted() -> Vec<u8> {
    // The enabled features cannot encrypt, so set the "encrypted" flag on a plain entry
    // in both headers; any reader that honours the flag must treat it as encrypted.
    let mut zip = zip_of(&[("secret.txt", b"not really secret")]);
    let entry = layout(&zip)[0];
    entry.patch_flags(&mut zip, |flags| flags | 0x0001);
    zip
}

/// An entry compressed with bzip2 (method 12), which we do not accept.
pub fn zip_unsupported_method() -> Vec<u8> {
    // The writer has no bzip2 here; relabel a stored entry's method as 12 in both headers.
    let mut zip = zip_stored(&[("data.bin", b"pretend this is bzip2")]);
    let entry = layout(&zip)[0];
    entry.put_u16(&mut zip, 10, 8, 12);
    zip
}

/// The classic overlap bomb: two central directory entries that point at the same
/// local header, so the same compressed bytes would be inflated twice.
pub fn zip_overlap() -> Vec<u8> {
    // Write two entries, then point the second central entry's local header offset at
    // the first entry. With many such entries a small file inflates enormously.
    let mut zip = zip_of(&[("a.txt", &[b'a'; 4096]), ("b.txt", &[b'b'; 4096])]);
    let [first, second] = <[RawEntry; 2]>::try_from(layout(&zip)).expect("two entries");
    let offset = u32::try_from(first.local).expect("small archive");
    put_u32(&mut zip, second.central + 42, offset);
    zip
}

/// An entry whose compressed data runs on into the central directory.
pub fn zip_data_past_directory() -> Vec<u8> {
    // Grow the compressed size (in both headers, so they still agree) by 64 bytes: the
    // entry's data now ends inside the central directory that follows it.
    let mut zip = zip_of(&[("a.txt", b"some text that deflates")]);
    let entry = layout(&zip)[0];
    let size = get_u32(&zip, entry.central + 20) + 64;
    put_u32(&mut zip, entry.central + 20, size);
    put_u32(&mut zip, entry.local + 18, size);
    zip
}

/// An entry whose local header names a different file (`b.txt`) than its central
/// directory entry (`a.txt`): readers that stream local headers see another archive.
pub fn zip_header_mismatch() -> Vec<u8> {
    let mut zip = zip_of(&[("a.txt", b"central says a, local says b")]);
    let entry = layout(&zip)[0];
    let name = entry.local + 30;
    zip[name..name + 5].copy_from_slice(b"b.txt");
    zip
}

/// A ratio bomb: 50 MiB of zeros deflated to about 50 KiB (roughly 1000:1).
pub fn zip_ratio_bomb() -> Vec<u8> {
    zip_of(&[("zeros.bin", &vec![0u8; 50 << 20])])
}

/// An archive of `n` empty stored files (`f0`, `f1`, ...). Above 65,535 entries the
/// writer switches to a ZIP64 end of central directory record.
pub fn zip_too_many_entries(n: usize) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .unix_permissions(0o644);
    for i in 0..n {
        w.start_file(format!("f{i}"), options).expect("start file");
    }
    w.finish().expect("finish").into_inner()
}

/// An entry that declares 16 bytes (with the CRC of its first 16 bytes) but inflates to
/// 64 KiB: only a reader that counts the bytes it actually inflates notices.
pub fn zip_lying_size() -> Vec<u8> {
    let data: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    let mut zip = zip_of(&[("lie.bin", &data)]);
    let entry = layout(&zip)[0];
    entry.put_u32(&mut zip, 24, 22, 16);
    entry.put_u32(&mut zip, 16, 14, crc32fast::hash(&data[..16]));
    zip
}

/// An archive with a directory entry `docs/`, a nested archive `docs/inner.zip` (an
/// ordinary file as far as extraction is concerned) and `docs/readme.txt`.
pub fn zip_with_directory_and_nested() -> Vec<u8> {
    let inner = zip_of(&[("inner.txt", b"inside the nested archive")]);
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o644);
    w.add_directory("docs/", SimpleFileOptions::default())
        .expect("add directory");
    w.start_file("docs/inner.zip", options).expect("start file");
    w.write_all(&inner).expect("write");
    w.start_file("docs/readme.txt", options)
        .expect("start file");
    w.write_all(b"read me").expect("write");
    w.finish().expect("finish").into_inner()
}

fn write_zip(files: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(method)
        .unix_permissions(0o644);
    for (name, data) in files {
        w.start_file(*name, options).expect("start file");
        w.write_all(data).expect("write");
    }
    w.finish().expect("finish").into_inner()
}

/// A one-entry archive whose entry is called `name`, which may be one the writer would
/// refuse or tidy: it is written under a same-length stand-in and renamed in place
/// (flagged UTF-8 when it is not ASCII).
pub fn zip_with_name(name: &str) -> Vec<u8> {
    let stand_in = "x".repeat(name.len());
    let mut zip = zip_of(&[(&stand_in, b"payload")]);
    let entry = layout(&zip)[0];
    entry.set_name(&mut zip, name.as_bytes());
    if !name.is_ascii() {
        // The writer flags UTF-8 names itself; the stand-in was ASCII.
        entry.patch_flags(&mut zip, |flags| flags | 0x0800);
    }
    zip
}

/// Where one entry's headers sit in an archive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawEntry {
    /// Offset of the central directory file header.
    pub(crate) central: usize,
    /// Offset of the local file header.
    pub(crate) local: usize,
}

impl RawEntry {
    /// Writes a u16 at `central_at` in the central header and `local_at` in the local one.
    pub(crate) fn put_u16(self, zip: &mut [u8], central_at: usize, local_at: usize, v: u16) {
        put_u16(zip, self.central + central_at, v);
        put_u16(zip, self.local + local_at, v);
    }

    /// Writes a u32 at `central_at` in the central header and `local_at` in the local one.
    pub(crate) fn put_u32(self, zip: &mut [u8], central_at: usize, local_at: usize, v: u32) {
        put_u32(zip, self.central + central_at, v);
        put_u32(zip, self.local + local_at, v);
    }

    /// Rewrites the general purpose flags in both headers.
    pub(crate) fn patch_flags(self, zip: &mut [u8], f: impl Fn(u16) -> u16) {
        let flags = f(get_u16(zip, self.central + 8));
        self.put_u16(zip, 8, 6, flags);
    }

    /// Replaces the name in both headers with one of the same length.
    pub(crate) fn set_name(self, zip: &mut [u8], name: &[u8]) {
        let len = usize::from(get_u16(zip, self.central + 28));
        assert_eq!(len, name.len(), "replacement name must keep the length");
        assert_eq!(usize::from(get_u16(zip, self.local + 26)), len);
        zip[self.central + 46..self.central + 46 + len].copy_from_slice(name);
        zip[self.local + 30..self.local + 30 + len].copy_from_slice(name);
    }
}

/// Header positions of every entry of an archive written by [`ZipWriter`] (no comment,
/// classic end of central directory record).
pub(crate) fn layout(zip: &[u8]) -> Vec<RawEntry> {
    let eocd = zip.len() - 22;
    assert_eq!(
        get_u32(zip, eocd),
        EOCD_SIG,
        "expected an EOCD without comment"
    );
    let count = usize::from(get_u16(zip, eocd + 10));
    let mut at = get_u32(zip, eocd + 16) as usize;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        assert_eq!(get_u32(zip, at), CENTRAL_SIG);
        let local = get_u32(zip, at + 42) as usize;
        assert_eq!(get_u32(zip, local), LOCAL_SIG);
        entries.push(RawEntry { central: at, local });
        at += 46
            + usize::from(get_u16(zip, at + 28))
            + usize::from(get_u16(zip, at + 30))
            + usize::from(get_u16(zip, at + 32));
    }
    entries
}

pub(crate) fn get_u16(zip: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([zip[at], zip[at + 1]])
}

pub(crate) fn get_u32(zip: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([zip[at], zip[at + 1], zip[at + 2], zip[at + 3]])
}

pub(crate) fn put_u16(zip: &mut [u8], at: usize, v: u16) {
    zip[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u32(zip: &mut [u8], at: usize, v: u32) {
    zip[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Every kind of archive this kit builds, well-formed and hostile, each with a
/// name: the fuzz targets' seed corpus and the differential test's crafted set.
pub fn crafted() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "deflated",
            zip_of(&[("a.txt", b"hello hello".as_slice()), ("d/b.bin", &[1; 300])]),
        ),
        (
            "stored",
            zip_stored(&[("a.txt", b"hello".as_slice()), ("empty", b"")]),
        ),
        ("empty", zip_of(&[])),
        ("directory-and-nested", zip_with_directory_and_nested()),
        (
            "unicode-path-same",
            zip_unicode_path(&[("same.txt", "same.txt")]),
        ),
        (
            "unicode-path-other",
            zip_unicode_path(&[("a.pdf", "a.exe")]),
        ),
        ("traversal", zip_traversal()),
        ("absolute", zip_absolute()),
        ("backslash", zip_backslash()),
        ("symlink", zip_symlink()),
        ("duplicate", zip_duplicate_exact()),
        ("casefold", zip_duplicate_casefold()),
        ("unicode-duplicate", zip_duplicate_unicode()),
        ("encrypted", zip_encrypted()),
        ("method", zip_unsupported_method()),
        ("overlap", zip_overlap()),
        ("past-directory", zip_data_past_directory()),
        ("header-mismatch", zip_header_mismatch()),
        ("lying-size", zip_lying_size()),
        ("entries", zip_too_many_entries(5)),
        ("utf8-name", zip_of(&[("caf\u{e9}/\u{5370}.txt", b"x")])),
        ("device-name", zip_with_name("aux.txt")),
        ("bidi", zip_with_name("a\u{202e}txt.exe")),
    ]
}

/// Panics unless `name` is safe as the validator promises: relative, without empty,
/// `.` or `..` components, backslashes, colons or control characters. For the
/// property tests and fuzz targets, on whatever the validator accepted.
pub fn assert_safe_name(name: &str) {
    assert!(
        !name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == ".."),
        "{name:?}"
    );
    assert!(!name.contains('\\') && !name.contains(':'), "{name:?}");
    assert!(!name.chars().any(char::is_control), "{name:?}");
}

/// The valid archives the structure-aware fuzz target patches (deflated, stored,
/// with a directory and a nested archive, with a Unicode Path field, with empty
/// entries).
pub fn mutation_bases() -> Vec<Vec<u8>> {
    vec![
        zip_of(&[
            ("a.txt", b"hello hello hello".as_slice()),
            ("dir/b.bin", &[7u8; 300]),
        ]),
        zip_stored(&[("a.txt", b"hello".as_slice()), ("b.txt", b"")]),
        zip_with_directory_and_nested(),
        zip_unicode_path(&[("same.txt", "same.txt")]),
        zip_too_many_entries(3),
    ]
}

/// The archive a structure-aware fuzz input stands for: one byte choosing one of
/// `bases` (from [`mutation_bases`]), then records of (2-byte little-endian offset,
/// 1 byte value, 1 byte mode): mode 0 writes the value, 1 adds it, 2 xors it, 3
/// truncates the archive at the offset. `None` for an empty input. The fuzz target
/// and the differential test (which replays the target's corpus) share it.
pub fn mutated(bases: &[Vec<u8>], input: &[u8]) -> Option<Vec<u8>> {
    let (&choice, patches) = input.split_first()?;
    let mut zip = bases[usize::from(choice) % bases.len()].clone();
    for patch in patches.chunks_exact(4) {
        if zip.is_empty() {
            break;
        }
        let at = usize::from(u16::from_le_bytes([patch[0], patch[1]])) % zip.len();
        match patch[3] % 4 {
            0 => zip[at] = patch[2],
            1 => zip[at] = zip[at].wrapping_add(patch[2]),
            2 => zip[at] ^= patch[2],
            _ => zip.truncate(at),
        }
    }
    Some(zip)
}

/// Panics unless every byte of `zip` is accounted for, as read by the `zip` crate
/// (an independent reader of the central directory) and the fixed header layouts,
/// not by the validator's own code: each entry's local header, data and data
/// descriptor, in offset order from byte 0 with no gap or overlap, then the central
/// directory, then (optionally) the ZIP64 end record and locator, then the end
/// record and its comment ending the file. For the property tests and fuzz targets,
/// on whatever the validator accepted.
pub fn assert_accounted_for(zip: &[u8]) {
    let u16_at = |at: u64| -> u64 {
        let at = usize::try_from(at).expect("offset");
        u64::from(u16::from_le_bytes([zip[at], zip[at + 1]]))
    };
    let sig_at = |at: u64, sig: u32| -> bool {
        usize::try_from(at)
            .ok()
            .and_then(|at| zip.get(at..at + 4))
            .is_some_and(|b| b == sig.to_le_bytes())
    };
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("the zip crate reads it");
    assert_eq!(archive.offset(), 0, "bytes before the first entry");
    // (local header start, data end, uses a data descriptor, central header start)
    let mut spans = Vec::new();
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).expect("entry");
        let start = entry.header_start();
        assert!(
            sig_at(start, LOCAL_SIG),
            "entry {i}: no local header at {start}"
        );
        let data = start + 30 + u16_at(start + 26) + u16_at(start + 28);
        let descriptor = u16_at(start + 6) & 0x0008 != 0;
        spans.push((
            start,
            data + entry.compressed_size(),
            descriptor,
            entry.central_header_start(),
        ));
    }
    spans.sort_unstable();
    let directory = archive.central_directory_start();
    let mut expected = 0;
    for (i, &(start, data_end, descriptor, _)) in spans.iter().enumerate() {
        assert_eq!(
            start, expected,
            "a gap or overlap before the local header at {start}"
        );
        let next = spans.get(i + 1).map_or(directory, |s| s.0);
        expected = if descriptor {
            // Optional signature, CRC-32, then 32- or 64-bit sizes.
            let lengths = [12, 16, 20, 24];
            let length = lengths
                .into_iter()
                .find(|&l| data_end + l == next)
                .unwrap_or_else(|| panic!("no data descriptor between {data_end} and {next}"));
            assert!(
                length % 8 == 4 || sig_at(data_end, 0x0807_4b50),
                "descriptor at {data_end}"
            );
            data_end + length
        } else {
            data_end
        };
    }
    assert_eq!(
        expected, directory,
        "bytes between the last entry and the central directory"
    );
    // The central directory: the headers back to back, in offset order.
    let mut at = directory;
    let mut centrals: Vec<u64> = spans.iter().map(|s| s.3).collect();
    centrals.sort_unstable();
    for central in centrals {
        assert_eq!(central, at, "a gap or overlap in the central directory");
        assert!(sig_at(at, CENTRAL_SIG));
        at += 46 + u16_at(at + 28) + u16_at(at + 30) + u16_at(at + 32);
    }
    if sig_at(at, 0x0606_4b50) {
        let at_usize = usize::try_from(at).expect("offset");
        let size = u64::from_le_bytes(zip[at_usize + 4..at_usize + 12].try_into().unwrap());
        at += 12 + size;
        assert!(
            sig_at(at, 0x0706_4b50),
            "a ZIP64 locator after the ZIP64 end record"
        );
        at += 20;
    }
    assert!(
        sig_at(at, EOCD_SIG),
        "the end record right after the directory"
    );
    let comment = u16_at(at + 20);
    assert_eq!(comment as usize, archive.comment().len());
    assert_eq!(
        at + 22 + comment,
        zip.len() as u64,
        "bytes after the end record"
    );
}
