//! Zig-zag variable-length integers, as Kafka encodes record fields
//! (protobuf's `sint32`/`sint64` encoding).

use crate::RecordsError;

/// Bytes `value` takes as a zig-zag varint.
pub fn varint_len(value: i32) -> usize {
    varlong_len(i64::from(value))
}

/// Bytes `value` takes as a zig-zag varlong.
pub fn varlong_len(value: i64) -> usize {
    let mut v = zigzag64(value);
    let mut len = 1;
    while v >= 0x80 {
        v >>= 7;
        len += 1;
    }
    len
}

pub fn put_varint(buf: &mut Vec<u8>, value: i32) {
    put_varlong(buf, i64::from(value));
}

pub fn put_varlong(buf: &mut Vec<u8>, value: i64) {
    let mut v = zigzag64(value);
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Reads a zig-zag varint at `*pos`, advancing it.
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Result<i32, RecordsError> {
    let value = get_varlong(buf, pos)?;
    i32::try_from(value).map_err(|_| RecordsError::CorruptRecord("varint out of range for int32"))
}

/// Reads a zig-zag varlong at `*pos`, advancing it.
pub fn get_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, RecordsError> {
    let mut raw: u64 = 0;
    let mut shift = 0;
    loop {
        let Some(&byte) = buf.get(*pos) else {
            return Err(RecordsError::CorruptRecord(
                "varint runs past the end of the batch",
            ));
        };
        *pos += 1;
        if shift == 63 && byte > 1 {
            return Err(RecordsError::CorruptRecord("varint longer than 10 bytes"));
        }
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return Err(RecordsError::CorruptRecord("varint longer than 10 bytes"));
        }
    }
}

fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        // Kafka's (and protobuf's) zig-zag examples.
        for (value, bytes) in [
            (0i64, vec![0x00]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
        ] {
            let mut buf = Vec::new();
            put_varlong(&mut buf, value);
            assert_eq!(buf, bytes, "encoding of {value}");
            assert_eq!(varlong_len(value), bytes.len());
        }
    }

    #[test]
    fn truncated_and_overlong_varints_are_errors() {
        let mut pos = 0;
        assert!(get_varlong(&[0x80, 0x80], &mut pos).is_err());
        let mut pos = 0;
        assert!(get_varlong(&[0xff; 11], &mut pos).is_err());
        let mut pos = 0;
        let mut buf = Vec::new();
        put_varlong(&mut buf, i64::from(i32::MAX) + 1);
        assert!(get_varint(&buf, &mut pos).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(value in any::<i64>()) {
            let mut buf = Vec::new();
            put_varlong(&mut buf, value);
            prop_assert_eq!(buf.len(), varlong_len(value));
            let mut pos = 0;
            prop_assert_eq!(get_varlong(&buf, &mut pos)?, value);
            prop_assert_eq!(pos, buf.len());
        }
    }
}
