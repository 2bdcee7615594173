//! Compression codecs for the records section of a batch, in the exact
//! framings Kafka's Java client writes and reads:
//!
//! - gzip: a plain gzip member (RFC 1952);
//! - snappy: snappy-java's "xerial" stream: an 8-byte magic, two big-endian
//!   int32 versions, then blocks of `[int32 length][raw snappy block]`, each
//!   block compressing at most 32 KiB of input. Raw (unframed) snappy is
//!   accepted on read, as Kafka's reader does;
//! - lz4: the LZ4 *frame* format with independent 64 KiB blocks and no
//!   checksums beyond the descriptor's (what Kafka's own LZ4 stream writes);
//! - zstd: a standard zstd frame.
//!
//! `records` stays free of codecs: the producer passes [`compress`] to
//! `RecordBatchBuilder::finish_compressed` and the consumer passes
//! [`decompress`] to `records::decode_batch`.

use std::io::{Read, Write};

use records::Compression;

/// Decompressed records sections larger than this are refused: a corrupt or
/// hostile batch must not make the client allocate without bound.
pub const MAX_DECOMPRESSED_BYTES: usize = 256 * 1024 * 1024;

/// Magic header of a snappy-java (xerial) stream.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// xerial header: magic, version 1, minimum compatible version 1.
const XERIAL_HEADER_LEN: usize = 16;
/// Input bytes per snappy block, snappy-java's default block size.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// zstd level used by Kafka's producer unless `compression.zstd.level` says otherwise.
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;

/// A codec failed. The message names the codec and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{codec} {operation} failed: {message}")]
pub struct CodecError {
    pub codec: &'static str,
    pub operation: &'static str,
    pub message: String,
}

impl CodecError {
    fn compress(codec: Compression, message: &dyn std::fmt::Display) -> Self {
        CodecError {
            codec: codec.name(),
            operation: "compression",
            message: message.to_string(),
        }
    }

    fn decompress(codec: Compression, message: &dyn std::fmt::Display) -> Self {
        CodecError {
            codec: codec.name(),
            operation: "decompression",
            message: message.to_string(),
        }
    }
}

/// Appends the compressed form of `input` to `out`.
pub fn compress(codec: Compression, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
    match codec {
        Compression::None => {
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            encoder
                .write_all(input)
                .and_then(|()| encoder.try_finish())
                .map_err(|e| CodecError::compress(codec, &e))
        }
        Compression::Snappy => snappy_xerial_compress(input, out),
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent)
                .block_checksums(false)
                .content_checksum(false);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            encoder
                .write_all(input)
                .map_err(|e| CodecError::compress(codec, &e))?;
            encoder
                .finish()
                .map(|_| ())
                .map_err(|e| CodecError::compress(codec, &e))
        }
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(out, ZSTD_DEFAULT_LEVEL)
                .map_err(|e| CodecError::compress(codec, &e))?;
            encoder
                .write_all(input)
                .map_err(|e| CodecError::compress(codec, &e))?;
            encoder
                .finish()
                .map(|_| ())
                .map_err(|e| CodecError::compress(codec, &e))
        }
    }
}

/// The decompressed form of `input`, at most [`MAX_DECOMPRESSED_BYTES`].
pub fn decompress(codec: Compression, input: &[u8]) -> Result<Vec<u8>, CodecError> {
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => read_bounded(codec, flate2::read::GzDecoder::new(input)),
        Compression::Snappy => snappy_xerial_decompress(input),
        Compression::Lz4 => read_bounded(codec, lz4_flex::frame::FrameDecoder::new(input)),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(input)
                .map_err(|e| CodecError::decompress(codec, &e))?;
            read_bounded(codec, decoder)
        }
    }
}

fn read_bounded(codec: Compression, reader: impl Read) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    reader
        .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CodecError::decompress(codec, &e))?;
    if out.len() > MAX_DECOMPRESSED_BYTES {
        return Err(too_large(codec));
    }
    Ok(out)
}

fn too_large(codec: Compression) -> CodecError {
    CodecError::decompress(
        codec,
        &format!("the records section decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes"),
    )
}

fn snappy_xerial_compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for chunk in input.chunks(XERIAL_BLOCK_BYTES) {
        let length_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        out.resize(start + snap::raw::max_compress_len(chunk.len()), 0);
        let written = encoder
            .compress(chunk, &mut out[start..])
            .map_err(|e| CodecError::compress(Compression::Snappy, &e))?;
        out.truncate(start + written);
        let length = i32::try_from(written)
            .map_err(|_| CodecError::compress(Compression::Snappy, &"block too large"))?;
        out[length_at..start].copy_from_slice(&length.to_be_bytes());
    }
    Ok(())
}

/// No snappy block expands more than this: its densest element, a 3-byte
/// copy, writes at most 64 bytes.
const SNAPPY_MAX_EXPANSION: usize = 32;

/// The decompressed length a raw snappy block declares, refused when the
/// block could not hold that much: the length is reserved before the
/// block is decoded, so believing it would let a few bytes claim (and
/// allocate) up to the whole decompression limit.
fn snappy_block_len(block: &[u8]) -> Result<usize, CodecError> {
    let codec = Compression::Snappy;
    let length = snap::raw::decompress_len(block).map_err(|e| CodecError::decompress(codec, &e))?;
    if length > block.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
        return Err(CodecError::decompress(
            codec,
            &format!(
                "a {}-byte block claims to decompress to {length} bytes",
                block.len()
            ),
        ));
    }
    Ok(length)
}

fn snappy_xerial_decompress(input: &[u8]) -> Result<Vec<u8>, CodecError> {
    let codec = Compression::Snappy;
    let mut decoder = snap::raw::Decoder::new();
    if !input.starts_with(&XERIAL_MAGIC) {
        // Not xerial-framed: one raw snappy block, as some clients write.
        let length = snappy_block_len(input)?;
        if length > MAX_DECOMPRESSED_BYTES {
            return Err(too_large(codec));
        }
        return decoder
            .decompress_vec(input)
            .map_err(|e| CodecError::decompress(codec, &e));
    }
    if input.len() < XERIAL_HEADER_LEN {
        return Err(CodecError::decompress(codec, &"truncated xerial header"));
    }
    let mut out = Vec::new();
    let mut pos = XERIAL_HEADER_LEN;
    while pos < input.len() {
        let Some(length_bytes) = input.get(pos..pos + 4) else {
            return Err(CodecError::decompress(codec, &"truncated block length"));
        };
        let length = i32::from_be_bytes([
            length_bytes[0],
            length_bytes[1],
            length_bytes[2],
            length_bytes[3],
        ]);
        pos += 4;
        let block = usize::try_from(length)
            .ok()
            .and_then(|length| input.get(pos..pos + length))
            .ok_or_else(|| {
                CodecError::decompress(codec, &format!("block length {length} runs past the input"))
            })?;
        pos += block.len();
        let block_len = snappy_block_len(block)?;
        if out.len() + block_len > MAX_DECOMPRESSED_BYTES {
            return Err(too_large(codec));
        }
        let start = out.len();
        out.resize(start + block_len, 0);
        let written = decoder
            .decompress(block, &mut out[start..])
            .map_err(|e| CodecError::decompress(codec, &e))?;
        out.truncate(start + written);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivially so.
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect()
    }

    #[test]
    fn every_codec_round_trips_small_empty_and_multi_block_inputs() {
        for codec in ALL {
            for len in [0, 1, 100, 32 * 1024, 32 * 1024 + 1, 200_000] {
                let input = sample(len);
                let mut compressed = Vec::new();
                compress(codec, &input, &mut compressed).unwrap();
                let output = decompress(codec, &compressed).unwrap();
                assert_eq!(output, input, "{codec:?} at {len} bytes");
            }
        }
    }

    /// Found by the decoder fuzz target (`tests/fuzz.rs`): the four bytes
    /// of a raw snappy length varint made the decoder reserve the 10 MiB
    /// they claim (up to the 256 MiB limit) before finding the block empty.
    #[test]
    fn a_snappy_length_the_block_cannot_hold_is_refused_before_allocating() {
        let err = decompress(Compression::Snappy, &[0x80, 0x80, 0x80, 0x05]).unwrap_err();
        assert!(err.message.contains("claims"), "{err}");
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 4, 0x80, 0x80, 0x80, 0x05]);
        let err = decompress(Compression::Snappy, &xerial).unwrap_err();
        assert!(err.message.contains("claims"), "{err}");
        // The densest real blocks (runs of one byte) still decode.
        for len in [64, 32 * 1024, 1 << 20] {
            let zeros = vec![0u8; len];
            let mut compressed = Vec::new();
            compress(Compression::Snappy, &zeros, &mut compressed).unwrap();
            assert_eq!(decompress(Compression::Snappy, &compressed).unwrap(), zeros);
            let raw = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
            assert_eq!(decompress(Compression::Snappy, &raw).unwrap(), zeros);
        }
    }

    #[test]
    fn compress_appends_after_existing_bytes() {
        for codec in ALL {
            let mut out = b"header".to_vec();
            compress(codec, b"hello hello hello", &mut out).unwrap();
            assert_eq!(&out[..6], b"header");
            assert_eq!(decompress(codec, &out[6..]).unwrap(), b"hello hello hello");
        }
    }

    /// snappy-java's own encoding of "foobar\n": the xerial header, then one
    /// block of 9 bytes holding a single literal.
    const XERIAL_FOOBAR: [u8; 29] = [
        0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x09, 0x07, 0x18, 0x66, 0x6f, 0x6f, 0x62, 0x61, 0x72, 0x0a,
    ];

    #[test]
    fn snappy_matches_the_java_clients_xerial_framing() {
        let mut out = Vec::new();
        compress(Compression::Snappy, b"foobar\n", &mut out).unwrap();
        assert_eq!(out, XERIAL_FOOBAR);
        assert_eq!(
            decompress(Compression::Snappy, &XERIAL_FOOBAR).unwrap(),
            b"foobar\n"
        );
    }

    #[test]
    fn snappy_blocks_hold_at_most_32_kib_of_input() {
        let input = sample(70_000);
        let mut out = Vec::new();
        compress(Compression::Snappy, &input, &mut out).unwrap();
        let mut pos = XERIAL_HEADER_LEN;
        let mut blocks = Vec::new();
        while pos < out.len() {
            let len = i32::from_be_bytes(out[pos..pos + 4].try_into().unwrap()) as usize;
            pos += 4;
            blocks.push(snap::raw::decompress_len(&out[pos..pos + len]).unwrap());
            pos += len;
        }
        assert_eq!(blocks, vec![32 * 1024, 32 * 1024, 70_000 - 64 * 1024]);
    }

    #[test]
    fn raw_snappy_is_read_too() {
        let raw = snap::raw::Encoder::new()
            .compress_vec(b"plain snappy")
            .unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw).unwrap(),
            b"plain snappy"
        );
    }

    #[test]
    fn lz4_writes_a_frame_kafka_accepts() {
        let mut out = Vec::new();
        compress(Compression::Lz4, b"kafka", &mut out).unwrap();
        // Frame magic 0x184D2204 (little-endian), FLG: version 01, block
        // independence set, no block or content checksum, no content size.
        assert_eq!(&out[..4], &[0x04, 0x22, 0x4d, 0x18]);
        assert_eq!(out[4], 0b0110_0000);
        // BD: 64 KiB maximum block size.
        assert_eq!(out[5], 0x40);
        // Ends with the zero-length end mark.
        assert_eq!(&out[out.len() - 4..], &[0, 0, 0, 0]);
    }

    #[test]
    fn gzip_and_zstd_write_their_standard_magic() {
        let mut gzip = Vec::new();
        compress(Compression::Gzip, b"x", &mut gzip).unwrap();
        assert_eq!(&gzip[..2], &[0x1f, 0x8b]);
        let mut zstd = Vec::new();
        compress(Compression::Zstd, b"x", &mut zstd).unwrap();
        assert_eq!(&zstd[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let err =
                decompress(codec, b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01\x7f\xff\xff\xff").unwrap_err();
            assert_eq!(err.codec, codec.name());
        }
    }
}
