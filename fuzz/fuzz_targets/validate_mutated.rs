//! Structure-aware: valid archives (deflated, stored, with a directory and a nested
//! archive, with a Unicode Path field, with empty entries) with the input applied as
//! byte patches, so that the fuzzer spends its time on header fields rather than on
//! finding signatures.
//!
//! The input is read as `testkit::mutated` says: one byte choosing the base archive,
//! then records of (2-byte little-endian offset, 1 byte value, 1 byte mode).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use intake_archive::testkit;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    static BASES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let Some(zip) = testkit::mutated(BASES.get_or_init(testkit::mutation_bases), data) else {
        return;
    };
    common::check(&zip, DIR.get_or_init(common::scratch));
});
