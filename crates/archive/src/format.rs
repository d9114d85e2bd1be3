//! The ZIP format's fixed numbers (signatures, record lengths, flags, methods) and the
//! little-endian and positional reads every check is built from.

use std::io;

use crate::{ArchiveSource, ExtractError};

pub(crate) const LOCAL_SIG: u32 = 0x0403_4b50;
pub(crate) const CENTRAL_SIG: u32 = 0x0201_4b50;
pub(crate) const EOCD_SIG: u32 = 0x0605_4b50;
pub(crate) const EOCD64_SIG: u32 = 0x0606_4b50;
pub(crate) const EOCD64_LOCATOR_SIG: u32 = 0x0706_4b50;
pub(crate) const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
pub(crate) const LOCAL_HEADER_LEN: u64 = 30;
pub(crate) const CENTRAL_HEADER_LEN: usize = 46;
pub(crate) const EOCD_LEN: usize = 22;
pub(crate) const EOCD64_LOCATOR_LEN: u64 = 20;
pub(crate) const EOCD64_MIN_LEN: u64 = 56;
/// The end of central directory record sits in the last 22 bytes plus a comment of at
/// most 64 KiB; the `zip` crate searches the same window (plus a signature's slack).
pub(crate) const EOCD_SEARCH_WINDOW: u64 = EOCD_LEN as u64 + 4 + (1 << 16);

/// General purpose flags that mean the data (or the directory) is encrypted: bit 0
/// (traditional or AES), bit 6 (strong encryption), bit 13 (masked central directory).
pub(crate) const ENCRYPTION_FLAGS: u16 = 0x0001 | 0x0040 | 0x2000;
/// General purpose flag bit 3: CRC and sizes follow the data, local fields may be zero.
pub(crate) const DATA_DESCRIPTOR_FLAG: u16 = 0x0008;
pub(crate) const METHOD_STORED: u16 = 0;
pub(crate) const METHOD_DEFLATE: u16 = 8;
/// WinZip AES marks entries with this pseudo compression method.
pub(crate) const METHOD_AES: u16 = 99;

/// Reads exactly `buf.len()` bytes at `offset` of the source (no cursor to move).
/// Running off the end means the archive lies about its layout, not that the source
/// failed.
pub(crate) fn read_at(
    source: &dyn ArchiveSource,
    offset: u64,
    buf: &mut [u8],
    what: &str,
) -> Result<(), ExtractError> {
    match source.read_exact_at(buf, offset) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ExtractError::invalid(format!(
            "the {what} at offset {offset} runs past the end of the file"
        ))),
        Err(e) => Err(ExtractError::io(format!("reading the {what}"), e)),
    }
}

pub(crate) fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

pub(crate) fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Whether `bytes` contain the signature of any ZIP record.
pub(crate) fn contains_signature(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| {
        w[..2] == *b"PK"
            && matches!(
                (w[2], w[3]),
                (1, 2) | (3, 4) | (5, 6) | (6, 6) | (6, 7) | (7, 8)
            )
    })
}
