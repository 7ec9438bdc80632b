//! The compression layer (`queue compression`): zlib deflate in a gzip
//! wrapper at the default level, as OpenSMTPD's `compress_gzip.c`.
//!
//! Each piece (an envelope, a message segment) is one gzip member.
//! [`decompress`] is bounded: a piece that would inflate past its limit is
//! refused, so a crafted blob cannot make the daemon allocate without end.
//! Pure: no I/O.

use std::io::{Read, Write};

use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

/// `data` as one gzip member.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        Compression::default(),
    );
    encoder
        .write_all(data)
        .expect("writing into a Vec cannot fail");
    encoder.finish().expect("finishing into a Vec cannot fail")
}

/// The content of one gzip member of at most `limit` bytes; an error says
/// why it is not one (bad header, CRC or length mismatch, truncated, too
/// large, bytes after it).
pub fn decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut decoder = GzDecoder::new(data);
    let mut out = Vec::new();
    let mut bounded = (&mut decoder).take(limit as u64 + 1);
    bounded.read_to_end(&mut out).map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(format!("inflates past {limit} bytes"));
    }
    // The member ended: its CRC and length were checked. Nothing may
    // follow it.
    let mut rest = [0u8; 1];
    if decoder.read(&mut rest).map_err(|e| e.to_string())? != 0 {
        return Err(format!("inflates past {limit} bytes"));
    }
    if !decoder.into_inner().is_empty() {
        return Err("bytes after the gzip member".to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_are_standard_gzip() {
        for data in [
            &b""[..],
            b"x",
            &[b'a'; 100_000],
            &(0..=255).collect::<Vec<u8>>(),
        ] {
            let packed = compress(data);
            assert_eq!(&packed[..2], &[0x1f, 0x8b], "gzip magic");
            assert_eq!(decompress(&packed, data.len()).unwrap(), data);
        }
        assert!(compress(&[b'a'; 100_000]).len() < 1000);
    }

    #[test]
    fn damage_is_detected() {
        let packed = compress(b"hello hello hello hello");
        // The CRC and the length at the end.
        for i in packed.len() - 8..packed.len() {
            let mut bad = packed.clone();
            bad[i] ^= 0x10;
            assert!(decompress(&bad, 100).is_err(), "byte {i}");
        }
        assert!(decompress(&packed[..packed.len() - 1], 100).is_err());
        assert!(decompress(b"not gzip at all", 100).is_err());
        let mut trailing = packed;
        trailing.push(0);
        assert!(decompress(&trailing, 100).is_err());
    }

    #[test]
    fn inflation_is_bounded() {
        let packed = compress(&[0; 10_000]);
        assert_eq!(decompress(&packed, 10_000).unwrap().len(), 10_000);
        assert!(decompress(&packed, 9_999).unwrap_err().contains("9999"));
    }
}
