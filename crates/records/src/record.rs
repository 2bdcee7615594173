//! Decoding the records inside a batch: for consumers and tests. The broker
//! never calls this; it works on whole batches.

use bytes::Bytes;

use crate::HeaderRef;
use crate::batch::{BatchHeader, HEADER_LEN};
use crate::varint::{get_varint, get_varlong};
use crate::{Compression, RecordsError, TimestampType};

/// One record borrowed from an uncompressed records section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The encoded headers; [`RecordRef::headers`] decodes them.
    headers: &'a [u8],
    header_count: i32,
}

impl<'a> RecordRef<'a> {
    /// The record's headers, decoded on demand.
    pub fn headers(&self) -> Result<Vec<HeaderRef<'a>>, RecordsError> {
        let mut pos = 0;
        // The count comes from the input: bound the allocation by the bytes.
        let mut out = Vec::with_capacity((self.header_count as usize).min(self.headers.len()));
        for _ in 0..self.header_count {
            let key = get_bytes(self.headers, &mut pos)?
                .ok_or(RecordsError::CorruptRecord("null header key"))?;
            let key = std::str::from_utf8(key)
                .map_err(|_| RecordsError::CorruptRecord("header key is not UTF-8"))?;
            let value = get_bytes(self.headers, &mut pos)?;
            out.push(HeaderRef { key, value });
        }
        Ok(out)
    }
}

/// Iterates over the records of an uncompressed records section (the bytes
/// after a batch header, or their decompressed form).
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    buf: &'a [u8],
    pos: usize,
    remaining: i32,
}

impl<'a> RecordIter<'a> {
    pub fn new(records: &'a [u8], record_count: i32) -> Self {
        RecordIter {
            buf: records,
            pos: 0,
            remaining: record_count.max(0),
        }
    }

    fn read_one(&mut self) -> Result<RecordRef<'a>, RecordsError> {
        let length = get_varint(self.buf, &mut self.pos)?;
        let length = usize::try_from(length)
            .map_err(|_| RecordsError::CorruptRecord("negative record length"))?;
        let end = self
            .pos
            .checked_add(length)
            .filter(|&end| end <= self.buf.len())
            .ok_or(RecordsError::CorruptRecord(
                "record runs past the end of the batch",
            ))?;
        let body = &self.buf[..end];
        let mut pos = self.pos + 1; // attributes: unused by v2
        let timestamp_delta = get_varlong(body, &mut pos)?;
        let offset_delta = get_varint(body, &mut pos)?;
        let key = get_bytes(body, &mut pos)?;
        let value = get_bytes(body, &mut pos)?;
        let header_count = get_varint(body, &mut pos)?;
        if header_count < 0 {
            return Err(RecordsError::CorruptRecord("negative header count"));
        }
        let headers = &body[pos.min(end)..end];
        // Walk the headers once so a corrupt record is caught here, not later.
        let mut header_pos = 0;
        for _ in 0..header_count {
            get_bytes(headers, &mut header_pos)?;
            get_bytes(headers, &mut header_pos)?;
        }
        if header_pos != headers.len() {
            return Err(RecordsError::CorruptRecord(
                "record length does not match its fields",
            ));
        }
        self.pos = end;
        Ok(RecordRef {
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers,
            header_count,
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordRef<'a>, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let result = self.read_one();
        self.remaining = if result.is_ok() {
            self.remaining - 1
        } else {
            0
        };
        Some(result)
    }
}

/// A decoded record with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Option<Bytes>,
}

/// Decodes every record of one batch (which the caller has validated).
///
/// Keys and values share `batch`'s buffer (or the decompressed buffer) rather
/// than being copied. `decompress` is called for compressed batches with the
/// codec and the compressed records section and returns the raw records.
pub fn decode_batch<E>(
    batch: &Bytes,
    decompress: impl FnOnce(Compression, &[u8]) -> Result<Vec<u8>, E>,
) -> Result<(BatchHeader, Vec<Record>), RecordsError>
where
    E: std::fmt::Display,
{
    let header = BatchHeader::parse(batch)?;
    let end = header.size_in_bytes().min(batch.len());
    let compression = header
        .compression()
        .ok_or(RecordsError::UnsupportedCompression(
            (header.attributes & 0x07) as u8,
        ))?;
    let records: Bytes = match compression {
        Compression::None => batch.slice(HEADER_LEN..end),
        codec => Bytes::from(
            decompress(codec, &batch[HEADER_LEN..end])
                .map_err(|e| RecordsError::Decompression(e.to_string()))?,
        ),
    };
    // The count comes from the input: bound the allocation by the bytes.
    let mut out = Vec::with_capacity((header.record_count.max(0) as usize).min(records.len()));
    for record in RecordIter::new(&records, header.record_count) {
        let record = record?;
        let timestamp = match header.timestamp_type() {
            TimestampType::LogAppendTime => header.max_timestamp,
            // Fields of the input: wrapping (as Kafka's Java does) instead of
            // an overflow panic, and the inverse of the builder's delta.
            TimestampType::CreateTime => header.base_timestamp.wrapping_add(record.timestamp_delta),
        };
        // Most records carry no headers: skip the parse-and-collect for them.
        let headers = if record.header_count == 0 {
            Vec::new()
        } else {
            record
                .headers()?
                .into_iter()
                .map(|h| RecordHeader {
                    key: h.key.to_owned(),
                    value: h.value.map(|v| records.slice_ref(v)),
                })
                .collect()
        };
        out.push(Record {
            // Saturating, as the header's last offset: a damaged base
            // offset must not give records offsets below their batch's.
            offset: header
                .base_offset
                .saturating_add(i64::from(record.offset_delta)),
            timestamp,
            key: record.key.map(|k| records.slice_ref(k)),
            value: record.value.map(|v| records.slice_ref(v)),
            headers,
        });
    }
    Ok((header, out))
}

fn get_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, RecordsError> {
    let len = get_varint(buf, pos)?;
    if len == -1 {
        return Ok(None);
    }
    if len < 0 {
        return Err(RecordsError::CorruptRecord("negative field length"));
    }
    let end = pos
        .checked_add(len as usize)
        .filter(|&end| end <= buf.len())
        .ok_or(RecordsError::CorruptRecord(
            "field runs past the end of the record",
        ))?;
    let bytes = &buf[*pos..end];
    *pos = end;
    Ok(Some(bytes))
}
