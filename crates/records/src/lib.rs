//! Kafka's RecordBatch v2 (magic 2), byte for byte: the one format of records
//! on the wire and on disk.
//!
//! - [`BatchHeader`] reads a batch's 61-byte header without touching its
//!   records; [`validate_batch`] and [`Batches`] check length, magic and
//!   CRC-32C; this is all the broker and the log ever do with records.
//! - [`RecordBatchBuilder`] and [`decode_batch`] encode and decode the
//!   records themselves, for clients and tests.
//!
//! Pure: no I/O, no clocks, no codecs. Compression codecs belong to the
//! client, which passes them in as functions.

mod batch;
mod builder;
mod record;
pub mod varint;

pub use batch::{
    BatchHeader, Batches, HEADER_LEN, LOG_OVERHEAD, MAGIC, peek_batch_size, rewritten_prefix,
    set_base_offset_and_epoch, valid_prefix, validate_batch,
};
pub use builder::{HeaderRef, RecordBatchBuilder};
pub use record::{Record, RecordHeader, RecordIter, RecordRef, decode_batch};

/// Why a batch or record was refused. None of these is retriable: the bytes
/// themselves are wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("record batch truncated: {available} bytes where {needed} are needed")]
    Truncated { needed: usize, available: usize },
    #[error("record batch has magic {0}; only magic 2 (RecordBatch v2) is supported")]
    BadMagic(i8),
    #[error("record batch length field {0} is too small for a batch header")]
    InvalidLength(i32),
    #[error("record batch length field says {declared} bytes but {actual} were given")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("record batch of {size} bytes is larger than the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("record batch CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("corrupt record: {0}")]
    CorruptRecord(&'static str),
    #[error("unknown compression codec {0}")]
    UnsupportedCompression(u8),
    #[error("record batch decompression failed: {0}")]
    Decompression(String),
}

/// The compression codec in a batch's attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn from_attributes(attributes: i16) -> Option<Compression> {
        Some(match attributes & 0x07 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Kafka's name, as in `compression.type`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => {
                return Err(format!(
                    "unknown compression type '{s}' (expected none, gzip, snappy, lz4 or zstd)"
                ));
            }
        })
    }
}

/// Which clock a batch's timestamps come from (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    #[default]
    CreateTime,
    LogAppendTime,
}
