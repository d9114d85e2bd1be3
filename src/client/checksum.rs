//! Integrity bound into the URL: before asking for URLs, the client reads the
//! archive once and computes the CRC32C of each part and of the whole file; the
//! server signs them into the presigned URLs (`checksums`, see `docs/PROTOCOL.md`)
//! and the store refuses a part whose bytes differ from what was hashed. CRC32C
//! because S3, Garage and the embedded store all check it and it hashes at
//! memory speed (the `crc32c` crate uses the CPU's instruction).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};

/// The header a checksum-bound URL requires.
pub const HEADER: &str = "x-amz-checksum-crc32c";
/// The algorithm's name on the wire.
pub const ALGORITHM: &str = "crc32c";

const MIB: u64 = 1024 * 1024;
/// The server's own default part size (16 MiB, grown in whole MiB to stay within
/// S3's 10,000 parts).
pub fn default_part_size(size: u64) -> u64 {
    (16 * MIB).max(size.div_ceil(10_000).div_ceil(MIB) * MIB)
}

/// The CRC32C of every part of a file cut at `part_size`, and of the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChecksums {
    pub part_size: u64,
    parts: Vec<u32>,
    object: u32,
}

impl FileChecksums {
    /// Reads `path` (`size` bytes) once; blocking.
    pub fn compute(path: &Path, size: u64, part_size: u64) -> std::io::Result<FileChecksums> {
        let mut f = std::fs::File::open(path)?;
        let mut buf = vec![0u8; MIB as usize];
        let mut parts = Vec::with_capacity(size.div_ceil(part_size) as usize);
        let mut object = 0u32;
        let mut left = size;
        while left > 0 {
            let mut part = 0u32;
            let mut part_left = part_size.min(left);
            while part_left > 0 {
                let n = part_left.min(buf.len() as u64) as usize;
                f.read_exact(&mut buf[..n])?;
                part = crc32c::crc32c_append(part, &buf[..n]);
                object = crc32c::crc32c_append(object, &buf[..n]);
                part_left -= n as u64;
                left -= n as u64;
            }
            parts.push(part);
        }
        Ok(FileChecksums {
            part_size,
            parts,
            object,
        })
    }

    /// The `checksums` extension field.
    pub fn to_json(&self) -> Value {
        json!({
            "algorithm": ALGORITHM,
            "part_size": self.part_size,
            "parts": self.parts.iter().map(|c| b64(*c)).collect::<Vec<_>>(),
            "object": b64(self.object),
        })
    }

    /// Part `n`'s checksum (from 1), base64.
    pub fn part(&self, n: u32) -> Option<String> {
        self.parts
            .get((n as usize).checked_sub(1)?)
            .map(|c| b64(*c))
    }

    /// The whole file's, base64.
    pub fn object(&self) -> String {
        b64(self.object)
    }
}

/// The CRC32C of `len` bytes of `path` at `offset`, base64; blocking. Tells a
/// part corrupted on its way (the file still hashes as signed) from a file that
/// changed.
pub fn range(path: &Path, offset: u64, len: u64) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; MIB as usize];
    let (mut crc, mut left) = (0u32, len);
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.read_exact(&mut buf[..n])?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        left -= n as u64;
    }
    Ok(b64(crc))
}

fn b64(crc: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_whole_agree_with_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..(2 * MIB + 5) as u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let c = FileChecksums::compute(&p, data.len() as u64, MIB).unwrap();
        assert_eq!(c.parts.len(), 3);
        assert_eq!(c.object, crc32c::crc32c(&data));
        assert_eq!(
            c.part(3).unwrap(),
            b64(crc32c::crc32c(&data[2 * MIB as usize..]))
        );
        assert_eq!(range(&p, MIB, MIB).unwrap(), c.part(2).unwrap());
        assert_eq!(c.part(4), None);
        assert_eq!(default_part_size(100 * MIB), 16 * MIB);
        assert!(10_000 * default_part_size(500_000 * MIB) >= 500_000 * MIB);
    }
}
