//! Helpers shared by the unit tests of every module: write bytes to a temporary
//! upload, open it, expect a refusal, extract everything.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::{EntryInfo, ExtractError, ExtractLimits, ExtractedFile, SafeArchive};

/// A temporary directory holding `upload.zip` with `bytes`.
pub(crate) fn upload(bytes: &[u8]) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("upload.zip");
    fs::write(&path, bytes).expect("write upload");
    (dir, path)
}

pub(crate) fn open_with(
    bytes: &[u8],
    limits: ExtractLimits,
) -> (TempDir, Result<SafeArchive, ExtractError>) {
    let (dir, path) = upload(bytes);
    let result = SafeArchive::open(&path, limits);
    (dir, result)
}

pub(crate) fn open_ok(bytes: &[u8]) -> (TempDir, SafeArchive) {
    let (dir, result) = open_with(bytes, ExtractLimits::default());
    (dir, result.expect("archive should open"))
}

/// The error extracting the first entry of `bytes` (which opens) fails with.
pub(crate) fn first_extract_error(bytes: &[u8]) -> ExtractError {
    let (dir, mut archive) = open_ok(bytes);
    let entry = archive.entries()[0].clone();
    match archive.extract_to(&entry, &dir.path().join("out")) {
        Ok(file) => panic!("extraction should fail, got {file:?}"),
        Err(e) => e,
    }
}

/// The code `open` refuses `bytes` with under `limits`.
pub(crate) fn refusal_with(bytes: &[u8], limits: ExtractLimits) -> ExtractError {
    match open_with(bytes, limits).1 {
        Ok(archive) => panic!("archive should be refused, got {archive:?}"),
        Err(e) => e,
    }
}

pub(crate) fn refusal(bytes: &[u8]) -> ExtractError {
    refusal_with(bytes, ExtractLimits::default())
}

/// Extracts every file; returns each entry with its result and the bytes written.
pub(crate) fn extract_all(
    archive: &mut SafeArchive,
    dir: &Path,
) -> Vec<(EntryInfo, ExtractedFile, Vec<u8>)> {
    let entries = archive.entries().to_vec();
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let dest = dir.join(format!("out-{i}"));
            let file = archive.extract_to(&entry, &dest).expect("extract");
            let bytes = fs::read(&dest).expect("read output");
            (entry, file, bytes)
        })
        .collect()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The start of a PNG image, for content sniffing.
pub(crate) const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
/// A minimal PDF document.
pub(crate) const PDF: &[u8] =
    b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
