//! Integrity bound into the URL (an extension beyond the seed, `docs/PROTOCOL.md`):
//! a client may hash the archive before sending it and hand the checksums over
//! (`checksums` in `request_presigned_url`, or the body of `POST …/parts/` when it
//! resumes). Each presigned URL is then signed with its part's checksum as the
//! header `x-amz-checksum-<algorithm>`, so the object store itself refuses a part
//! whose bytes changed after hashing (400 `BadDigest`) and the client sends it
//! again. Without the field everything works as the seed says.
//!
//! ```json
//! "checksums": { "algorithm": "crc32c", "part_size": 16777216,
//!                "parts": ["<base64>", …], "object": "<base64>" }
//! ```
//!
//! `parts` are the checksums of the file cut at `part_size` (used when the
//! session is multipart, and then `part_size` is its part size), `object` the
//! checksum of the whole file (used for a single PUT).
//!
//! This file imports nothing of the crate (only serde_json and base64): `fuzz/`
//! compiles it on its own with `presign_request.rs` (`tests/architecture.rs` keeps it
//! so). The store's form of these checksums (`store::Checksum`) is made in
//! `uploads/mod.rs`.

use base64::Engine as _;
use serde_json::Value;

/// S3's limits on a part.
const MIN_PART: u64 = 5 * 1024 * 1024;
const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;

/// The algorithms a client may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Crc32c,
    Sha256,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_lowercase().as_str() {
            "crc32c" => Some(Algorithm::Crc32c),
            "sha256" | "sha-256" => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    /// The name clients send and the server echoes (`checksum_algorithm`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32c => "crc32c",
            Algorithm::Sha256 => "sha256",
        }
    }

    fn digest_len(self) -> usize {
        match self {
            Algorithm::Crc32c => 4,
            Algorithm::Sha256 => 32,
        }
    }
}

/// A client's checksums of one file, checked for shape against its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksums {
    pub algorithm: Algorithm,
    pub part_size: u64,
    parts: Vec<String>,
    object: String,
}

impl Checksums {
    /// Reads the extension field for a file of `file_size` bytes. The error says
    /// what is wrong, for `ERR_INVALID_CHECKSUMS`.
    pub fn parse(v: &Value, file_size: u64) -> Result<Checksums, String> {
        let algorithm = v["algorithm"]
            .as_str()
            .and_then(Algorithm::parse)
            .ok_or("checksums.algorithm must be \"crc32c\" or \"sha256\"")?;
        let part_size = v["part_size"]
            .as_u64()
            .filter(|p| *p > 0)
            .ok_or("checksums.part_size must be a positive integer")?;
        let value = |v: &Value, what: &str| -> Result<String, String> {
            let s = v
                .as_str()
                .ok_or(format!("checksums.{what} must be base64"))?;
            match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(d) if d.len() == algorithm.digest_len() => Ok(s.to_owned()),
                _ => Err(format!(
                    "checksums.{what} is not a base64 {} digest",
                    algorithm.name()
                )),
            }
        };
        let object = value(&v["object"], "object")?;
        let list = v["parts"]
            .as_array()
            .ok_or("checksums.parts must be a list")?;
        let expected = file_size.div_ceil(part_size);
        if list.len() as u64 != expected {
            return Err(format!(
                "checksums.parts has {} entries; a file of {file_size} bytes in parts of {part_size} has {expected}",
                list.len()
            ));
        }
        let parts = list
            .iter()
            .enumerate()
            .map(|(i, p)| value(p, &format!("parts[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Checksums {
            algorithm,
            part_size,
            parts,
            object,
        })
    }

    /// Checks that `part_size` can be a multipart upload's part size.
    pub fn check_part_size(&self, max_parts: u64) -> Result<(), String> {
        if !(MIN_PART..=MAX_PART).contains(&self.part_size) {
            return Err(format!(
                "checksums.part_size must be between {MIN_PART} and {MAX_PART} bytes for a multipart upload"
            ));
        }
        if self.parts.len() as u64 > max_parts {
            return Err(format!("checksums.parts: at most {max_parts} parts"));
        }
        Ok(())
    }

    /// How many parts the checksums are of.
    pub fn part_count(&self) -> usize {
        self.parts.len()
    }

    /// Part `n`'s checksum (from 1), base64 as the client sent it.
    pub fn part_value(&self, n: u64) -> &str {
        &self.parts[(n - 1) as usize]
    }

    /// The whole file's checksum, base64 as the client sent it.
    pub fn object_value(&self) -> &str {
        &self.object
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Checksum;
    use serde_json::json;

    #[test]
    fn shapes_are_checked() {
        let crc = "AAAAAA==";
        let ok = json!({"algorithm": "CRC32C", "part_size": 5, "parts": [crc, crc], "object": crc});
        let c = Checksums::parse(&ok, 7).unwrap();
        assert_eq!(c.algorithm, Algorithm::Crc32c);
        assert_eq!(c.part(2), Checksum::Crc32c(crc.into()));
        assert!(
            Checksums::parse(&ok, 11)
                .unwrap_err()
                .contains("has 2 entries")
        );
        let sha = json!({"algorithm": "sha256", "part_size": 7, "parts": [crc], "object": crc});
        assert!(
            Checksums::parse(&sha, 7)
                .unwrap_err()
                .contains("sha256 digest")
        );
        let bad = json!({"algorithm": "md5", "part_size": 7, "parts": [crc], "object": crc});
        assert!(Checksums::parse(&bad, 7).is_err());
        assert!(c.check_part_size(10_000).is_err(), "5 bytes is no S3 part");
    }
}
