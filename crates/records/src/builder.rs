//! Building a RecordBatch v2 from records: what producers (and tests) use.

use bytes::Bytes;

use crate::batch::{
    ATTRIBUTES, BASE_OFFSET, BASE_SEQUENCE, BASE_TIMESTAMP, CRC, HEADER_LEN, LAST_OFFSET_DELTA,
    LENGTH, LOG_OVERHEAD, MAGIC, MAGIC_OFFSET, MAX_TIMESTAMP, PARTITION_LEADER_EPOCH,
    PRODUCER_EPOCH, PRODUCER_ID, RECORD_COUNT,
};
use crate::varint::{put_varint, put_varlong, varint_len, varlong_len};
use crate::{Compression, TimestampType};

/// A record header as given to the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// Accumulates records into one batch.
///
/// Records are encoded straight into one growing buffer behind a reserved
/// header, so appending allocates only when the buffer grows; `finish` fills
/// the header in place. Compression, if any, is applied by the caller's codec
/// in [`RecordBatchBuilder::finish_compressed`]: codecs belong to the client.
#[derive(Debug, Clone)]
pub struct RecordBatchBuilder {
    buf: Vec<u8>,
    timestamp_type: TimestampType,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl Default for RecordBatchBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl RecordBatchBuilder {
    /// A builder whose buffer holds `capacity` bytes of records before it grows.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER_LEN + capacity);
        buf.resize(HEADER_LEN, 0);
        RecordBatchBuilder {
            buf,
            timestamp_type: TimestampType::CreateTime,
            base_timestamp: -1,
            max_timestamp: -1,
            record_count: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }

    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> Self {
        self.timestamp_type = timestamp_type;
        self
    }

    /// Idempotent-producer fields; -1 (the default) means "none".
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// The size of the batch `finish` would return now.
    pub fn size_in_bytes(&self) -> usize {
        self.buf.len()
    }

    /// What appending this record would add to [`size_in_bytes`](Self::size_in_bytes)
    /// (the producer checks it against `batch.size` before appending).
    pub fn record_size(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) -> usize {
        let body = self.body_len(timestamp, key, value, headers);
        varint_len(body as i32) + body
    }

    /// Appends a record and returns its offset delta within the batch.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) -> i32 {
        if self.record_count == 0 {
            self.base_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let offset_delta = self.record_count;
        let body = self.body_len(timestamp, key, value, headers);
        let buf = &mut self.buf;
        buf.reserve(varint_len(body as i32) + body);
        put_varint(buf, body as i32);
        buf.push(0); // record attributes: unused by v2
        // Wrapping, as Kafka's Java client computes it: the decoder adds it
        // back with the same wrap, so any pair of timestamps round-trips.
        put_varlong(buf, timestamp.wrapping_sub(self.base_timestamp));
        put_varint(buf, offset_delta);
        put_bytes(buf, key);
        put_bytes(buf, value);
        put_varint(buf, headers.len() as i32);
        for header in headers {
            put_bytes(buf, Some(header.key.as_bytes()));
            put_bytes(buf, header.value);
        }
        self.record_count += 1;
        offset_delta
    }

    fn body_len(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) -> usize {
        let base_timestamp = if self.record_count == 0 {
            timestamp
        } else {
            self.base_timestamp
        };
        1 + varlong_len(timestamp.wrapping_sub(base_timestamp))
            + varint_len(self.record_count)
            + bytes_len(key)
            + bytes_len(value)
            + varint_len(headers.len() as i32)
            + headers
                .iter()
                .map(|h| bytes_len(Some(h.key.as_bytes())) + bytes_len(h.value))
                .sum::<usize>()
    }

    /// The finished, uncompressed batch with base offset 0 and partition
    /// leader epoch -1 (the leader assigns both when it appends).
    ///
    /// A batch needs at least one record; finishing an empty builder yields
    /// a batch that validation refuses.
    pub fn finish(mut self) -> Bytes {
        debug_assert!(!self.is_empty(), "finish called on an empty batch builder");
        self.fill_header(Compression::None);
        Bytes::from(self.buf)
    }

    /// The finished batch with its records compressed by `compress`, which
    /// appends the compressed form of its input to the given buffer.
    pub fn finish_compressed<E>(
        mut self,
        compression: Compression,
        compress: impl FnOnce(&[u8], &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Bytes, E> {
        if compression == Compression::None {
            return Ok(self.finish());
        }
        let mut out = Vec::with_capacity(HEADER_LEN + (self.buf.len() - HEADER_LEN) / 2);
        out.extend_from_slice(&self.buf[..HEADER_LEN]);
        compress(&self.buf[HEADER_LEN..], &mut out)?;
        self.buf = out;
        self.fill_header(compression);
        Ok(Bytes::from(self.buf))
    }

    fn fill_header(&mut self, compression: Compression) {
        let buf = &mut self.buf;
        let batch_length = (buf.len() - LOG_OVERHEAD) as i32;
        let mut attributes = compression.attribute_bits();
        if self.timestamp_type == TimestampType::LogAppendTime {
            attributes |= 0x08;
        }
        put_i64(buf, BASE_OFFSET, 0);
        put_i32(buf, LENGTH, batch_length);
        put_i32(buf, PARTITION_LEADER_EPOCH, -1);
        buf[MAGIC_OFFSET] = MAGIC as u8;
        buf[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        put_i32(buf, LAST_OFFSET_DELTA, self.record_count - 1);
        put_i64(buf, BASE_TIMESTAMP, self.base_timestamp);
        put_i64(buf, MAX_TIMESTAMP, self.max_timestamp);
        put_i64(buf, PRODUCER_ID, self.producer_id);
        buf[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&self.producer_epoch.to_be_bytes());
        put_i32(buf, BASE_SEQUENCE, self.base_sequence);
        put_i32(buf, RECORD_COUNT, self.record_count);
        let crc = crc32c::crc32c(&buf[ATTRIBUTES..]);
        buf[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

fn bytes_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varint_len(-1),
        Some(b) => varint_len(b.len() as i32) + b.len(),
    }
}

fn put_bytes(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i32);
            buf.extend_from_slice(b);
        }
    }
}

fn put_i32(buf: &mut [u8], at: usize, value: i32) {
    buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

fn put_i64(buf: &mut [u8], at: usize, value: i64) {
    buf[at..at + 8].copy_from_slice(&value.to_be_bytes());
}
