//! The sealed format of the queue layers: what a blob looks like when
//! `queue compression` or `queue encryption` is on (SPEC.md 4.13).
//!
//! Every blob starts with a header: `SQ`, the format version (1), the
//! blob's kind (`E` envelope, `M` message), the layers applied (bit 0
//! gzip, bit 1 AES-256-GCM) and the key id (8 bytes, zero without
//! encryption); a message header adds its segment size (u32, big endian).
//! An envelope is then one piece; a message is a series of records, one
//! per segment of [`SEGMENT_SIZE`] plaintext bytes: a kind byte (0 data,
//! 1 last), the body length (u32, big endian) and the body. Every data
//! segment is full; the last holds the rest (possibly nothing), so a
//! truncated message is detected. A piece is gzip'ed, then sealed
//! (`IV ‖ ciphertext ‖ tag`) with the header, the message id and, for a
//! segment, its index and kind as additional data.
//!
//! [`Codec`] seals and opens; [`OpenError`] says why a blob does not open
//! and whether it was written under other settings ([`OpenError::is_foreign`])
//! rather than damaged. Pure: no I/O.

use std::fmt;

use super::compress::{compress, decompress};
use super::encrypt::{Cipher, Key, KeyId, OVERHEAD};
use crate::queue::MsgId;

/// The first bytes of every layered blob.
pub const MAGIC: [u8; 2] = *b"SQ";

/// The format version written.
pub const VERSION: u8 = 1;

/// The plaintext bytes of a message segment.
pub const SEGMENT_SIZE: usize = 64 * 1024;

/// The segment sizes a reader accepts from a header.
const SEGMENT_SIZES: std::ops::RangeInclusive<usize> = 1024..=1024 * 1024;

/// The length of an envelope's header.
pub const HEADER_LEN: usize = 13;

/// The length of a message's header.
pub const MESSAGE_HEADER_LEN: usize = HEADER_LEN + 4;

/// The length of a record's head: kind and body length.
pub const RECORD_HEAD_LEN: usize = 5;

/// The most an envelope inflates to.
const ENVELOPE_LIMIT: usize = 1024 * 1024;

const KIND_ENVELOPE: u8 = b'E';
const KIND_MESSAGE: u8 = b'M';
const FLAG_GZIP: u8 = 1;
const FLAG_AES: u8 = 2;

/// The layers a blob went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    /// gzip.
    pub compress: bool,
    /// AES-256-GCM.
    pub encrypt: bool,
}

impl Layers {
    fn bits(self) -> u8 {
        (u8::from(self.compress) * FLAG_GZIP) | (u8::from(self.encrypt) * FLAG_AES)
    }

    /// The layers of a header's bits; `None` for unknown bits.
    pub fn from_bits(bits: u8) -> Option<Self> {
        (bits & !(FLAG_GZIP | FLAG_AES) == 0).then_some(Self {
            compress: bits & FLAG_GZIP != 0,
            encrypt: bits & FLAG_AES != 0,
        })
    }
}

impl fmt::Display for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.compress, self.encrypt) {
            (false, false) => "neither compression nor encryption",
            (true, false) => "compression",
            (false, true) => "encryption",
            (true, true) => "compression and encryption",
        })
    }
}

/// Whether a record is a full data segment or the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A full segment; more follow.
    Data,
    /// The last segment.
    Last,
}

impl RecordKind {
    fn byte(self) -> u8 {
        match self {
            Self::Data => 0,
            Self::Last => 1,
        }
    }

    /// The kind of a record's first byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Data),
            1 => Some(Self::Last),
            _ => None,
        }
    }
}

/// Why a blob does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// No layer header: written without compression and encryption.
    #[error("stored with neither compression nor encryption, but the queue is configured with {configured}")]
    Plain {
        /// The configured layers.
        configured: Layers,
    },
    /// Written in a format version this daemon does not know.
    #[error("stored in layer format version {0}, which this daemon does not read")]
    Version(u8),
    /// Written with other layers than configured.
    #[error("stored with {found}, but the queue is configured with {configured}")]
    Layers {
        /// The blob's layers.
        found: Layers,
        /// The configured ones.
        configured: Layers,
    },
    /// Sealed with another key.
    #[error("sealed with another key (key id {found}; the configured key's id is {configured})")]
    OtherKey {
        /// The blob's key id.
        found: KeyId,
        /// The configured key's id.
        configured: KeyId,
    },
    /// The tag does not match: tampered or truncated.
    #[error("does not decrypt: authentication failed (tampered or truncated)")]
    Auth,
    /// The gzip member is damaged.
    #[error("does not decompress: {0}")]
    Decompress(String),
    /// The framing is wrong.
    #[error("malformed: {0}")]
    Malformed(String),
}

impl OpenError {
    /// Whether the blob was written under other settings (no layers,
    /// other layers, another key, a newer format) rather than damaged.
    pub fn is_foreign(&self) -> bool {
        matches!(
            self,
            Self::Plain { .. } | Self::Version(_) | Self::Layers { .. } | Self::OtherKey { .. }
        )
    }
}

/// Seals and opens blobs with the configured layers.
#[derive(Debug, Clone)]
pub struct Codec {
    compress: bool,
    cipher: Option<Cipher>,
}

impl Codec {
    /// The codec of these settings; `None` when neither layer is on.
    pub fn new(compress: bool, key: Option<&Key>) -> Option<Self> {
        (compress || key.is_some()).then(|| Self {
            compress,
            cipher: key.map(Cipher::new),
        })
    }

    /// The configured layers.
    pub fn layers(&self) -> Layers {
        Layers {
            compress: self.compress,
            encrypt: self.cipher.is_some(),
        }
    }

    fn header(&self, kind: u8) -> [u8; HEADER_LEN] {
        let mut h = [0; HEADER_LEN];
        h[..2].copy_from_slice(&MAGIC);
        h[2] = VERSION;
        h[3] = kind;
        h[4] = self.layers().bits();
        if let Some(cipher) = &self.cipher {
            h[5..].copy_from_slice(&cipher.key_id().0);
        }
        h
    }

    /// Checks a header against the settings.
    fn check_header(&self, blob: &[u8], kind: u8) -> Result<(), OpenError> {
        let configured = self.layers();
        if blob.len() < 3 || blob[..2] != MAGIC {
            return Err(OpenError::Plain { configured });
        }
        if blob[2] != VERSION {
            return Err(OpenError::Version(blob[2]));
        }
        if blob.len() < HEADER_LEN {
            return Err(OpenError::Malformed("header truncated".to_owned()));
        }
        if blob[3] != kind {
            return Err(OpenError::Malformed(format!(
                "a blob of kind {:?} where {:?} was expected",
                char::from(blob[3]),
                char::from(kind)
            )));
        }
        let found = Layers::from_bits(blob[4])
            .ok_or_else(|| OpenError::Malformed(format!("unknown layer bits {:#04x}", blob[4])))?;
        if found != configured {
            return Err(OpenError::Layers { found, configured });
        }
        if let Some(cipher) = &self.cipher {
            let found = KeyId(blob[5..HEADER_LEN].try_into().expect("8 bytes"));
            if found != cipher.key_id() {
                return Err(OpenError::OtherKey {
                    found,
                    configured: cipher.key_id(),
                });
            }
        }
        Ok(())
    }

    /// Compresses, then encrypts, appending to `out`.
    fn seal_piece(&self, aad: &[u8], plain: &[u8], out: &mut Vec<u8>) {
        let packed;
        let plain = if self.compress {
            packed = compress(plain);
            &packed[..]
        } else {
            plain
        };
        match &self.cipher {
            Some(cipher) => cipher.seal(aad, plain, out),
            None => out.extend_from_slice(plain),
        }
    }

    /// Decrypts, then decompresses.
    fn open_piece(&self, aad: &[u8], body: &[u8], limit: usize) -> Result<Vec<u8>, OpenError> {
        let opened;
        let body = match &self.cipher {
            Some(cipher) => {
                opened = cipher.open(aad, body).map_err(|_| OpenError::Auth)?;
                &opened[..]
            }
            None => body,
        };
        let plain = if self.compress {
            decompress(body, limit).map_err(OpenError::Decompress)?
        } else {
            body.to_vec()
        };
        if plain.len() > limit {
            return Err(OpenError::Malformed(format!(
                "{} bytes where at most {limit} fit",
                plain.len()
            )));
        }
        Ok(plain)
    }

    /// The stored form of an envelope of `msgid`.
    pub fn seal_envelope(&self, msgid: MsgId, plain: &[u8]) -> Vec<u8> {
        let header = self.header(KIND_ENVELOPE);
        let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + OVERHEAD);
        out.extend_from_slice(&header);
        self.seal_piece(&envelope_aad(&header, msgid), plain, &mut out);
        out
    }

    /// The envelope of `msgid` in a stored blob.
    pub fn open_envelope(&self, msgid: MsgId, blob: &[u8]) -> Result<Vec<u8>, OpenError> {
        self.check_header(blob, KIND_ENVELOPE)?;
        let (header, body) = blob.split_at(HEADER_LEN);
        self.open_piece(&envelope_aad(header, msgid), body, ENVELOPE_LIMIT)
    }

    /// The header that starts a stored message.
    pub fn message_header(&self) -> Vec<u8> {
        let mut h = self.header(KIND_MESSAGE).to_vec();
        h.extend_from_slice(&(SEGMENT_SIZE as u32).to_be_bytes());
        h
    }

    /// Checks the start of a stored message (at least
    /// [`MESSAGE_HEADER_LEN`] bytes) and answers its segment size.
    pub fn open_message_header(&self, start: &[u8]) -> Result<usize, OpenError> {
        self.check_header(start, KIND_MESSAGE)?;
        let size = start
            .get(HEADER_LEN..MESSAGE_HEADER_LEN)
            .ok_or_else(|| OpenError::Malformed("header truncated".to_owned()))?;
        let size = u32::from_be_bytes(size.try_into().expect("4 bytes")) as usize;
        if !SEGMENT_SIZES.contains(&size) {
            return Err(OpenError::Malformed(format!("segment size {size}")));
        }
        Ok(size)
    }

    /// The record of segment `index` of `msgid`: head and sealed body.
    pub fn seal_record(
        &self,
        header: &[u8],
        msgid: MsgId,
        index: u64,
        kind: RecordKind,
        plain: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_HEAD_LEN + plain.len() + OVERHEAD + 64);
        out.extend_from_slice(&[kind.byte(), 0, 0, 0, 0]);
        self.seal_piece(&record_aad(header, msgid, index, kind), plain, &mut out);
        let body = u32::try_from(out.len() - RECORD_HEAD_LEN).expect("a record body is small");
        out[1..RECORD_HEAD_LEN].copy_from_slice(&body.to_be_bytes());
        out
    }

    /// The plaintext of segment `index` from its record's body. A data
    /// segment must be full; the last one at most `segment_size`.
    pub fn open_record(
        &self,
        header: &[u8],
        msgid: MsgId,
        index: u64,
        kind: RecordKind,
        body: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        let segment_size = self.open_message_header(header)?;
        let aad = record_aad(header, msgid, index, kind);
        let plain = self.open_piece(&aad, body, segment_size)?;
        if kind == RecordKind::Data && plain.len() != segment_size {
            return Err(OpenError::Malformed(format!(
                "segment {index} holds {} bytes, not {segment_size}",
                plain.len()
            )));
        }
        Ok(plain)
    }

    /// The largest record body a segment of `segment_size` bytes may
    /// have: gzip can grow incompressible data a little.
    pub fn max_body(segment_size: usize) -> usize {
        segment_size + segment_size / 64 + 1024 + OVERHEAD
    }
}

fn envelope_aad(header: &[u8], msgid: MsgId) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(&msgid.0.to_be_bytes());
    aad
}

fn record_aad(header: &[u8], msgid: MsgId, index: u64, kind: RecordKind) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(&msgid.0.to_be_bytes());
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(kind.byte());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: MsgId = MsgId(0x0bad_cafe);

    fn key(b: u8) -> Key {
        Key::from_bytes(&[b; 32]).unwrap()
    }

    fn codecs() -> Vec<Codec> {
        vec![
            Codec::new(true, None).unwrap(),
            Codec::new(false, Some(&key(1))).unwrap(),
            Codec::new(true, Some(&key(1))).unwrap(),
        ]
    }

    #[test]
    fn no_layer_no_codec() {
        assert!(Codec::new(false, None).is_none());
    }

    #[test]
    fn envelopes_round_trip_and_are_not_plaintext() {
        let plain = b"version: 3\ndispatcher: local\nrcpt: bob@example.org\n";
        for c in codecs() {
            let sealed = c.seal_envelope(M, plain);
            assert_eq!(&sealed[..3], b"SQ\x01");
            if c.layers().encrypt {
                assert!(!sealed.windows(3).any(|w| w == b"bob"), "{:?}", c.layers());
            }
            assert_eq!(c.open_envelope(M, &sealed).unwrap(), plain);
            assert_eq!(c.open_envelope(M, &c.seal_envelope(M, b"")).unwrap(), b"");
        }
    }

    #[test]
    fn compression_comes_before_encryption() {
        let c = Codec::new(true, Some(&key(1))).unwrap();
        let plain = vec![b'a'; 10_000];
        let sealed = c.seal_envelope(M, &plain);
        // Encrypted compressed data is small; compressing ciphertext
        // would not be.
        assert!(sealed.len() < 200, "{}", sealed.len());
        let cipher = Cipher::new(&key(1));
        let header = &sealed[..HEADER_LEN];
        let inner = cipher
            .open(&envelope_aad(header, M), &sealed[HEADER_LEN..])
            .unwrap();
        assert_eq!(&inner[..2], &[0x1f, 0x8b], "gzip inside the ciphertext");
    }

    #[test]
    fn an_envelope_is_bound_to_its_message() {
        let c = Codec::new(false, Some(&key(1))).unwrap();
        let sealed = c.seal_envelope(M, b"x");
        assert_eq!(c.open_envelope(MsgId(1), &sealed), Err(OpenError::Auth));
    }

    #[test]
    fn tampering_is_detected_in_every_byte() {
        for c in [
            Codec::new(false, Some(&key(1))).unwrap(),
            Codec::new(true, Some(&key(1))).unwrap(),
        ] {
            let sealed = c.seal_envelope(M, b"version: 3\n");
            for i in 0..sealed.len() {
                let mut bad = sealed.clone();
                bad[i] ^= 0x04;
                assert!(c.open_envelope(M, &bad).is_err(), "byte {i}");
            }
        }
    }

    #[test]
    fn other_settings_are_foreign_damage_is_not() {
        let gz_aes = Codec::new(true, Some(&key(1))).unwrap();
        let sealed = gz_aes.seal_envelope(M, b"x");
        let other_key = Codec::new(true, Some(&key(2))).unwrap();
        let e = other_key.open_envelope(M, &sealed).unwrap_err();
        assert!(
            matches!(e, OpenError::OtherKey { .. }) && e.is_foreign(),
            "{e}"
        );
        assert!(e.to_string().contains(&key(1).id().to_string()));
        let gz = Codec::new(true, None).unwrap();
        let e = gz.open_envelope(M, &sealed).unwrap_err();
        assert!(
            matches!(e, OpenError::Layers { .. }) && e.is_foreign(),
            "{e}"
        );
        let e = gz_aes.open_envelope(M, b"version: 3\n").unwrap_err();
        assert!(
            matches!(e, OpenError::Plain { .. }) && e.is_foreign(),
            "{e}"
        );
        let mut newer = sealed.clone();
        newer[2] = 9;
        assert_eq!(gz_aes.open_envelope(M, &newer), Err(OpenError::Version(9)));
        let mut damaged = sealed;
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        let e = gz_aes.open_envelope(M, &damaged).unwrap_err();
        assert!(!e.is_foreign(), "{e}");
        // Compression alone: the gzip CRC catches damage.
        let sealed = gz.seal_envelope(M, b"version: 3\nhelo: x\n");
        let mut damaged = sealed;
        let n = damaged.len();
        damaged[n - 6] ^= 1;
        assert!(matches!(
            gz.open_envelope(M, &damaged),
            Err(OpenError::Decompress(_))
        ));
    }

    #[test]
    fn records_round_trip_bound_to_their_place() {
        for c in codecs() {
            let header = c.message_header();
            assert_eq!(c.open_message_header(&header).unwrap(), SEGMENT_SIZE);
            let full = vec![7u8; SEGMENT_SIZE];
            let rec = c.seal_record(&header, M, 3, RecordKind::Data, &full);
            assert_eq!(rec[0], 0);
            let len = u32::from_be_bytes(rec[1..5].try_into().unwrap()) as usize;
            assert_eq!(len, rec.len() - RECORD_HEAD_LEN);
            assert!(len <= Codec::max_body(SEGMENT_SIZE));
            let body = &rec[RECORD_HEAD_LEN..];
            assert_eq!(
                c.open_record(&header, M, 3, RecordKind::Data, body)
                    .unwrap(),
                full
            );
            let last = c.seal_record(&header, M, 4, RecordKind::Last, b"");
            let body = &last[RECORD_HEAD_LEN..];
            assert_eq!(
                c.open_record(&header, M, 4, RecordKind::Last, body)
                    .unwrap(),
                b""
            );
            // A short data segment is refused.
            let short = c.seal_record(&header, M, 0, RecordKind::Data, b"abc");
            let body = &short[RECORD_HEAD_LEN..];
            assert!(c
                .open_record(&header, M, 0, RecordKind::Data, body)
                .is_err());
            if c.layers().encrypt {
                let body = &rec[RECORD_HEAD_LEN..];
                assert_eq!(
                    c.open_record(&header, M, 2, RecordKind::Data, body),
                    Err(OpenError::Auth)
                );
                assert_eq!(
                    c.open_record(&header, M, 3, RecordKind::Last, body),
                    Err(OpenError::Auth)
                );
                assert_eq!(
                    c.open_record(&header, MsgId(9), 3, RecordKind::Data, body),
                    Err(OpenError::Auth)
                );
            }
        }
    }

    #[test]
    fn incompressible_segments_fit_the_body_bound() {
        let c = Codec::new(true, Some(&key(1))).unwrap();
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..SEGMENT_SIZE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let rec = c.seal_record(&c.message_header(), M, 0, RecordKind::Data, &noise);
        assert!(rec.len() - RECORD_HEAD_LEN <= Codec::max_body(SEGMENT_SIZE));
    }
}
