//! SRS (Sender Rewriting Scheme) for relay actions with `srs`, as
//! OpenSMTPD 7.8 rewrites the sender of a forwarded message so that the
//! next hop's SPF check sees our domain (delivery.md section 7):
//!
//! | sender | becomes |
//! |---|---|
//! | `user@dom` | `SRS0=HHHH=TT=dom=user@RCPTDOMAIN` |
//! | `SRS0=rest@hop` | `SRS1=HHHH=hop==rest@RCPTDOMAIN` (`rest` keeps its `=`) |
//! | `SRS1=HHHH=rest@hop` | `SRS1=HHHH=rest@RCPTDOMAIN` (a new hash) |
//!
//! TT is the day (days since the epoch, modulo 1024) in two base32
//! characters; HHHH the first four characters of the base64 SHA-1 of the
//! key followed by the text after `HHHH=`. RCPTDOMAIN is the domain of
//! the original recipient. It applies when the action has `srs`, an `srs
//! key` is set, the sender is not empty, the envelope is no bounce, and
//! the envelope was forwarded (its original recipient is not its
//! destination).
//!
//! SHA-1 is written here (it is only a signature for this scheme and the
//! crate has no other use for it).

use crate::queue::envelope::{Envelope, MailAddr};
use crate::smtp::encode_base64;

/// The base32 alphabet of the timestamp.
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Whether `envelope`'s sender is rewritten: not empty, no bounce, and
/// forwarded (its original recipient differs from its destination).
pub fn applies(envelope: &Envelope) -> bool {
    !envelope.sender.user.is_empty()
        && !envelope.sender.domain.is_empty()
        && !envelope.flags.bounce
        && !same_address(&envelope.rcpt, &envelope.dest)
}

fn same_address(a: &MailAddr, b: &MailAddr) -> bool {
    a.user == b.user && a.domain.eq_ignore_ascii_case(&b.domain)
}

/// The SRS form of `sender` for a message forwarded from `rcpt_domain`,
/// signed with `key`, on day `day` (days since the epoch).
pub fn encode(sender: &MailAddr, rcpt_domain: &str, key: &str, day: u64) -> String {
    let user = &sender.user;
    let prefix = |text: &str, tag: &str| {
        user.get(..text.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(text))
            .then(|| &user[tag.len()..])
    };
    let (kind, signed) = if let Some(rest) = prefix("SRS0=", "SRS0") {
        // `rest` starts with `=`: hop==HHHH=TT=...
        ("SRS1", format!("{}={rest}", sender.domain))
    } else if let Some(rest) = prefix("SRS1=", "SRS1=") {
        // Drop the old hash: keep what follows it.
        match rest.split_once('=') {
            Some((_, after)) => ("SRS1", after.to_owned()),
            None => ("SRS0", srs0_text(sender, day)),
        }
    } else {
        ("SRS0", srs0_text(sender, day))
    };
    let hash = hash(key, &signed);
    format!("{kind}={hash}={signed}@{rcpt_domain}")
}

/// `TT=dom=user`.
fn srs0_text(sender: &MailAddr, day: u64) -> String {
    let stamp = (day % 1024) as usize;
    format!(
        "{}{}={}={}",
        BASE32[(stamp >> 5) & 0x1f] as char,
        BASE32[stamp & 0x1f] as char,
        sender.domain,
        sender.user
    )
}

/// The first four characters of base64(SHA-1(key ‖ text)).
fn hash(key: &str, text: &str) -> String {
    let mut input = Vec::with_capacity(key.len() + text.len());
    input.extend_from_slice(key.as_bytes());
    input.extend_from_slice(text.as_bytes());
    encode_base64(&sha1(&input)).chars().take(4).collect()
}

/// SHA-1 (FIPS 180-4) of `data`.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (state, value) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(value);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn addr(user: &str, domain: &str) -> MailAddr {
        MailAddr {
            user: user.to_owned(),
            domain: domain.to_owned(),
        }
    }

    #[test]
    fn sha1_vectors() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(&[b'a'; 1000])),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
    }

    // Expected values computed with Python's hashlib and base64.
    #[test]
    fn senders_are_rewritten_as_7_8_does() {
        let day = 20_000;
        let srs0 = encode(&addr("joe", "example.org"), "forward.test", "secret", day);
        assert_eq!(srs0, "SRS0=4Qeb=RA=example.org=joe@forward.test");
        let srs1 = encode(
            &addr("SRS0=4Qeb=RA=example.org=joe", "hop.test"),
            "forward.test",
            "secret",
            day,
        );
        assert_eq!(
            srs1,
            "SRS1=UPEz=hop.test==4Qeb=RA=example.org=joe@forward.test"
        );
        let again = encode(
            &addr(
                "SRS1=UPEz=hop.test==4Qeb=RA=example.org=joe",
                "forward.test",
            ),
            "next.test",
            "secret",
            day,
        );
        assert_eq!(
            again,
            "SRS1=UPEz=hop.test==4Qeb=RA=example.org=joe@next.test"
        );
    }

    #[test]
    fn the_timestamp_wraps_every_1024_days() {
        let a = encode(&addr("u", "d"), "r", "k", 5);
        let b = encode(&addr("u", "d"), "r", "k", 5 + 1024);
        assert_eq!(a, b);
        assert!(a.contains("=AF=d=u@r"), "{a}");
    }
}
