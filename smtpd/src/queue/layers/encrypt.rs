//! The encryption layer (`queue encryption`): AES-256-GCM, as OpenSMTPD's
//! `crypto.c`, with a random 96-bit IV for every sealed piece and its
//! 128-bit tag checked on every open.
//!
//! [`Key`] is the 32-byte key (the configured string's raw bytes, no KDF,
//! as 7.8); [`KeyId`] a short public fingerprint of it, stored in every
//! sealed blob so that a queue written with another key is told apart from
//! a tampered blob. [`Cipher::seal`] and [`Cipher::open`] work on one piece
//! (an envelope, a message segment) with additional authenticated data
//! that binds it to its place (header, message id, segment index), so a
//! piece moved elsewhere does not open either. Pure: no I/O but the OS's
//! random numbers.

use std::fmt;

use aes_gcm::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use sha2::{Digest, Sha256};

/// The length of a key, in bytes.
pub const KEY_LEN: usize = 32;

/// The length of the IV stored before each sealed piece.
pub const IV_LEN: usize = 12;

/// The length of the tag stored after each sealed piece.
pub const TAG_LEN: usize = 16;

/// What sealing adds to a piece: IV and tag.
pub const OVERHEAD: usize = IV_LEN + TAG_LEN;

/// A queue encryption key. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(id {})", self.id())
    }
}

/// A key that is not exactly [`KEY_LEN`] bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a queue encryption key is exactly {KEY_LEN} bytes (such as the output of `openssl rand -hex 16`), not {0}")]
pub struct KeyLengthError(pub usize);

impl Key {
    /// The key made of these bytes, which must be exactly [`KEY_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyLengthError> {
        <[u8; KEY_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| KeyLengthError(bytes.len()))
    }

    /// The key's public fingerprint.
    pub fn id(&self) -> KeyId {
        let digest = Sha256::new()
            .chain_update(b"smtpd queue key id\0")
            .chain_update(self.0)
            .finalize();
        let mut id = [0; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

/// The first 8 bytes of SHA-256 over a label and the key: enough to tell
/// keys apart, nothing to recover one. Printed as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A piece that does not open: wrong key, tampered, truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed (tampered, truncated or sealed with another key)")]
pub struct AuthError;

/// AES-256-GCM with one key.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
    id: KeyId,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cipher(key id {})", self.id)
    }
}

impl Cipher {
    /// The cipher of `key`.
    pub fn new(key: &Key) -> Self {
        Self {
            aead: Aes256Gcm::new(&key.0.into()),
            id: key.id(),
        }
    }

    /// The key's fingerprint.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// Appends `IV ‖ ciphertext ‖ tag` of `plain` to `out`, with a fresh
    /// random IV, authenticating `aad` too.
    pub fn seal(&self, aad: &[u8], plain: &[u8], out: &mut Vec<u8>) {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        out.reserve(plain.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .aead
            .encrypt_in_place_detached(&nonce, aad, &mut out[start..])
            .expect("AES-GCM seals anything below 64 GiB; pieces are at most a few MiB");
        out.extend_from_slice(&tag);
    }

    /// The plaintext of a sealed piece (`IV ‖ ciphertext ‖ tag`), checked
    /// against its tag and `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
        if sealed.len() < OVERHEAD {
            return Err(AuthError);
        }
        let (iv, rest) = sealed.split_at(IV_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plain = ciphertext.to_vec();
        self.aead
            .decrypt_in_place_detached(Nonce::from_slice(iv), aad, &mut plain, Tag::from_slice(tag))
            .map_err(|_| AuthError)?;
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::from_bytes(&[byte; KEY_LEN]).unwrap()
    }

    #[test]
    fn keys_are_exactly_32_bytes() {
        assert!(Key::from_bytes(b"0123456789abcdef0123456789abcdef").is_ok());
        assert_eq!(Key::from_bytes(b"short").unwrap_err(), KeyLengthError(5));
        assert_eq!(Key::from_bytes(&[0; 33]).unwrap_err(), KeyLengthError(33));
        assert!(!format!("{:?}", key(7)).contains("07"));
    }

    #[test]
    fn key_ids_tell_keys_apart() {
        assert_eq!(key(1).id(), key(1).id());
        assert_ne!(key(1).id(), key(2).id());
        assert_eq!(key(1).id().to_string().len(), 16);
    }

    #[test]
    fn round_trip_with_a_fresh_iv_each_time() {
        let c = Cipher::new(&key(1));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        c.seal(b"aad", b"hello", &mut a);
        c.seal(b"aad", b"hello", &mut b);
        assert_eq!(a.len(), 5 + OVERHEAD);
        assert_ne!(a[..IV_LEN], b[..IV_LEN]);
        assert_ne!(a, b);
        assert_eq!(c.open(b"aad", &a).unwrap(), b"hello");
        assert_eq!(c.open(b"aad", &b).unwrap(), b"hello");
        let mut empty = Vec::new();
        c.seal(b"", b"", &mut empty);
        assert_eq!(c.open(b"", &empty).unwrap(), b"");
    }

    #[test]
    fn every_flipped_byte_wrong_aad_or_key_is_detected() {
        let c = Cipher::new(&key(1));
        let mut sealed = Vec::new();
        c.seal(b"aad", b"some content", &mut sealed);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(c.open(b"aad", &bad), Err(AuthError), "byte {i}");
        }
        assert_eq!(c.open(b"other", &sealed), Err(AuthError));
        assert_eq!(Cipher::new(&key(2)).open(b"aad", &sealed), Err(AuthError));
        assert_eq!(c.open(b"aad", &sealed[..sealed.len() - 1]), Err(AuthError));
        assert_eq!(c.open(b"aad", &sealed[..OVERHEAD - 1]), Err(AuthError));
    }
}
