//! The RecordBatch v2 header: a view that reads the 61 header bytes without
//! touching the records, validation, and iteration over batches laid back to
//! back (as in a produce request, a fetch response or a log segment).

use crate::{Compression, RecordsError, TimestampType};

/// Magic byte of RecordBatch v2, the only format this project reads or writes.
pub const MAGIC: i8 = 2;
/// Bytes before the batch length counts from: base offset and the length itself.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;

pub(crate) const BASE_OFFSET: usize = 0;
pub(crate) const LENGTH: usize = 8;
pub(crate) const PARTITION_LEADER_EPOCH: usize = 12;
pub(crate) const MAGIC_OFFSET: usize = 16;
pub(crate) const CRC: usize = 17;
/// The CRC covers everything from the attributes to the end of the batch, so
/// base offset and partition leader epoch can be rewritten without it.
pub(crate) const ATTRIBUTES: usize = 21;
pub(crate) const LAST_OFFSET_DELTA: usize = 23;
pub(crate) const BASE_TIMESTAMP: usize = 27;
pub(crate) const MAX_TIMESTAMP: usize = 35;
pub(crate) const PRODUCER_ID: usize = 43;
pub(crate) const PRODUCER_EPOCH: usize = 51;
pub(crate) const BASE_SEQUENCE: usize = 53;
pub(crate) const RECORD_COUNT: usize = 57;

const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// The header fields of one batch. Parsing it reads 61 bytes and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field: the batch's total size is this plus 12.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads the header at the start of `buf`. Checks only what is needed to
    /// trust the other fields' positions: enough bytes, magic 2 and a length
    /// that can hold a header. The CRC is checked by [`validate_batch`].
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, RecordsError> {
        if buf.len() < HEADER_LEN {
            return Err(RecordsError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != MAGIC {
            return Err(RecordsError::BadMagic(magic));
        }
        let batch_length = read_i32(buf, LENGTH);
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(RecordsError::InvalidLength(batch_length));
        }
        Ok(BatchHeader {
            base_offset: read_i64(buf, BASE_OFFSET),
            batch_length,
            partition_leader_epoch: read_i32(buf, PARTITION_LEADER_EPOCH),
            magic,
            crc: read_i32(buf, CRC) as u32,
            attributes: read_i16(buf, ATTRIBUTES),
            last_offset_delta: read_i32(buf, LAST_OFFSET_DELTA),
            base_timestamp: read_i64(buf, BASE_TIMESTAMP),
            max_timestamp: read_i64(buf, MAX_TIMESTAMP),
            producer_id: read_i64(buf, PRODUCER_ID),
            producer_epoch: read_i16(buf, PRODUCER_EPOCH),
            base_sequence: read_i32(buf, BASE_SEQUENCE),
            record_count: read_i32(buf, RECORD_COUNT),
        })
    }

    /// The batch's size on the wire and on disk.
    pub fn size_in_bytes(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Saturates at `i64::MAX` for the base offsets near it that no log
    /// holds: the fields come from the input, and the base offset lies
    /// outside the CRC, so a damaged one must not overflow here.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset the batch after this one starts at (saturating, as
    /// [`last_offset`](Self::last_offset)).
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// The compression codec bits; `None` if they name no codec Kafka knows.
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_attributes(self.attributes)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// The total size of the batch starting at `buf`, from its length field:
/// `None` while fewer than 12 bytes are there ("not enough bytes yet" is a
/// state, not an error). A negative length is reported as a too-small size,
/// which validation then refuses.
pub fn peek_batch_size(buf: &[u8]) -> Option<usize> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let length = read_i32(buf, LENGTH);
    Some(usize::try_from(length).map_or(0, |l| l + LOG_OVERHEAD))
}

/// Checks that `batch` is exactly one well-formed batch: magic 2, a length
/// field matching the slice, at most `max_size` bytes, a sane record count
/// and a matching CRC-32C. Returns its header.
pub fn validate_batch(batch: &[u8], max_size: usize) -> Result<BatchHeader, RecordsError> {
    let header = BatchHeader::parse(batch)?;
    let size = header.size_in_bytes();
    if size > max_size {
        return Err(RecordsError::TooLarge {
            size,
            max: max_size,
        });
    }
    if size != batch.len() {
        return Err(RecordsError::LengthMismatch {
            declared: size,
            actual: batch.len(),
        });
    }
    if header.last_offset_delta < 0 || header.record_count < 0 {
        return Err(RecordsError::CorruptRecord(
            "negative last offset delta or record count",
        ));
    }
    let computed = crc32c::crc32c(&batch[ATTRIBUTES..]);
    if computed != header.crc {
        return Err(RecordsError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Iterates over batches laid back to back, validating each one (CRC
/// included). Stops at the first error, which it yields; a partial batch at
/// the end yields [`RecordsError::Truncated`].
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    max_size: usize,
    failed: bool,
}

impl<'a> Batches<'a> {
    pub fn new(buf: &'a [u8], max_batch_size: usize) -> Self {
        Batches {
            buf,
            pos: 0,
            max_size: max_batch_size,
            failed: false,
        }
    }

    /// Bytes of `buf` consumed by the batches yielded so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos == self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let result = match peek_batch_size(rest) {
            None => Err(RecordsError::Truncated {
                needed: LOG_OVERHEAD,
                available: rest.len(),
            }),
            // A length beyond the bytes present is damage, not a large batch.
            Some(size) if size > rest.len() => Err(RecordsError::Truncated {
                needed: size,
                available: rest.len(),
            }),
            Some(size) if size > self.max_size => Err(RecordsError::TooLarge {
                size,
                max: self.max_size,
            }),
            Some(size) => validate_batch(&rest[..size], self.max_size).map(|h| (h, &rest[..size])),
        };
        match &result {
            Ok((header, _)) => self.pos += header.size_in_bytes(),
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

/// Length of the longest prefix of `buf` made of whole, valid batches, and
/// the error that ended it (none if the whole buffer is valid). This is what
/// log recovery keeps.
pub fn valid_prefix(buf: &[u8], max_batch_size: usize) -> (usize, Option<RecordsError>) {
    let mut batches = Batches::new(buf, max_batch_size);
    for result in batches.by_ref() {
        if let Err(err) = result {
            return (batches.position(), Some(err));
        }
    }
    (batches.position(), None)
}

/// The first 16 bytes of a batch with its base offset and partition leader
/// epoch replaced: both lie outside the CRC, so a log can write this prefix
/// followed by the untouched rest of the batch (`&batch[16..]`) instead of
/// copying the batch to change it.
pub fn rewritten_prefix(batch: &[u8], base_offset: i64, partition_leader_epoch: i32) -> [u8; 16] {
    let mut prefix = [0u8; 16];
    prefix[..8].copy_from_slice(&base_offset.to_be_bytes());
    prefix[8..12].copy_from_slice(&batch[LENGTH..LENGTH + 4]);
    prefix[12..].copy_from_slice(&partition_leader_epoch.to_be_bytes());
    prefix
}

/// Rewrites base offset and partition leader epoch in place.
pub fn set_base_offset_and_epoch(batch: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

pub(crate) fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

pub(crate) fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

pub(crate) fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(bytes)
}
