//! The limits one archive is held to, and the ratio rule shared by the header checks
//! and extraction.

/// Entries that inflate to at most this many bytes are never refused for their
/// compression ratio: small, highly regular files (a page of blank CSV rows, an empty
/// spreadsheet template) legitimately compress far beyond 200:1, and 1 MiB cannot hurt.
pub const RATIO_FLOOR_BYTES: u64 = 1 << 20;

const GIB: u64 = 1 << 30;
/// Longest accepted entry name. Real names are far shorter (file systems stop at
/// 4096-byte paths); the cap also bounds the memory the names of 100,000 entries take.
pub const MAX_NAME_BYTES: usize = 4096;

/// Limits applied to one archive. Counts and sizes are checked against the headers at
/// [`SafeArchive::open`](crate::SafeArchive::open) and against the bytes actually
/// inflated during extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Most entries (files and directories) the central directory may list.
    pub max_entries: u64,
    /// Most bytes inflated across the whole archive, over every `extract_to` call
    /// (re-extracting an entry counts again).
    pub max_total_bytes: u64,
    /// Most bytes any one entry may inflate to.
    pub max_entry_bytes: u64,
    /// Highest accepted inflated : compressed ratio of an entry, above
    /// [`RATIO_FLOOR_BYTES`].
    pub max_ratio: u64,
}

impl Default for ExtractLimits {
    /// 100,000 entries; 5 GiB per entry; 20 GiB per archive; 200:1.
    ///
    /// 5 GiB per entry fits scanned books, long recordings and database dumps (and
    /// needs ZIP64, which is supported) while keeping a single record uploadable in
    /// one multipart upload. 20 GiB per archive bounds the scratch disk one job can
    /// fill; it is several times a typical batch. Ordinary documents compress to well
    /// under 20:1 and even repetitive logs and CSV rarely pass 100:1, while deflate
    /// can reach about 1000:1, so 200:1 only refuses crafted or degenerate data.
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_total_bytes: 20 * GIB,
            max_entry_bytes: 5 * GIB,
            max_ratio: 200,
        }
    }
}

/// Whether `expanded` bytes from `compressed` bytes is beyond `max_ratio`. Entries up
/// to [`RATIO_FLOOR_BYTES`] always pass.
pub(crate) fn ratio_exceeded(expanded: u64, compressed: u64, max_ratio: u64) -> bool {
    expanded > RATIO_FLOOR_BYTES && expanded > compressed.saturating_mul(max_ratio)
}
