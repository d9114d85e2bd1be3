//! Structure-aware: valid archives (deflated, stored, with a directory and a nested
//! archive, with a Unicode Path field, with empty entries) with the input applied as
//! byte patches, so that the fuzzer spends its time on header fields rather than on
//! finding signatures.
//!
//! The input is read as: one byte choosing the base archive, then records of
//! (2-byte little-endian offset, 1 byte value, 1 byte mode): mode 0 writes the value,
//! 1 adds it, 2 xors it, 3 truncates the archive at the offset.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use intake_archive::testkit;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn bases() -> &'static [Vec<u8>] {
    static BASES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BASES.get_or_init(|| {
        vec![
            testkit::zip_of(&[
                ("a.txt", b"hello hello hello".as_slice()),
                ("dir/b.bin", &[7u8; 300]),
            ]),
            testkit::zip_stored(&[("a.txt", b"hello".as_slice()), ("b.txt", b"")]),
            testkit::zip_with_directory_and_nested(),
            testkit::zip_unicode_path(&[("same.txt", "same.txt")]),
            testkit::zip_too_many_entries(3),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let Some((&choice, patches)) = data.split_first() else {
        return;
    };
    let bases = bases();
    let mut zip = bases[usize::from(choice) % bases.len()].clone();
    for patch in patches.chunks_exact(4) {
        let at = usize::from(u16::from_le_bytes([patch[0], patch[1]]));
        if zip.is_empty() {
            break;
        }
        let at = at % zip.len();
        match patch[3] % 4 {
            0 => zip[at] = patch[2],
            1 => zip[at] = zip[at].wrapping_add(patch[2]),
            2 => zip[at] ^= patch[2],
            _ => zip.truncate(at),
        }
    }
    common::check(&zip, DIR.get_or_init(common::scratch));
});
