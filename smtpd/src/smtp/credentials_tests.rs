use super::*;
use crate::smtp::auth::{decode_base64, parse_plain};

/// Hashes made by libxcrypt's crypt(3) (the portable OpenSMTPD's checker)
/// and the SHA-crypt specification's vectors, with their passwords.
const KNOWN: &[(&str, &str)] = &[
    (
        "$2b$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW",
        "secret",
    ),
    (
        "$2a$04$abcdefghijklmnopqrstuuyx2n0Zzopyr9QuYTMCfOJJOj526QVoC",
        "pässwörd",
    ),
    (
        "$2y$05$012345678901234567890uYSzEDciWetUoyf4rt1FsJyYhzAtkrVe",
        "correct horse",
    ),
    // OpenBSD's bcrypt regression vector.
    (
        "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        "U*U",
    ),
    (
        "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
        "Hello world!",
    ),
    (
        "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA",
        "Hello world!",
    ),
    (
        "$5$rounds=1000$short$ratmlRGFminDQyrdzCvMM.OD8PK8X1cWNZbEHxSOxd2",
        "x",
    ),
    (
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        "Hello world!",
    ),
    (
        "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
        "the minimum number is still observed",
    ),
    // A salt longer than 16 characters counts for its first 16, as in
    // crypt(3).
    (
        "$6$saltsaltsaltsaltsalt$w9KIcjBboSr4FRz5Mqvv35NxfaTzLt25DkAkWseZNSPtt3jwYb/9xKaR0Sljd8VDRYTG5y0w9.Z6wNFR3dcoK1",
        "long salt",
    ),
];

#[test]
fn known_hashes_accept_their_password_only() {
    for (hash, password) in KNOWN {
        assert_eq!(verify_hash(hash, password.as_bytes()), Ok(true), "{hash}");
        for wrong in ["", "wrong", "Secret", &format!("{password} ")] {
            assert_eq!(
                verify_hash(hash, wrong.as_bytes()),
                Ok(false),
                "{hash} {wrong:?}"
            );
        }
    }
}

#[test]
fn values_with_and_without_a_user() {
    let hash = KNOWN[0].0;
    let cases: &[(String, Result<Entry<'_>, Error>)] = &[
        (
            format!("alice:{hash}"),
            Ok(Entry {
                user: Some("alice"),
                hash,
            }),
        ),
        (hash.to_owned(), Ok(Entry { user: None, hash })),
        (
            "ab".to_owned(),
            Err(Error::Malformed("shorter than 3 characters")),
        ),
        (
            format!(":{hash}"),
            Err(Error::Malformed("empty user or password")),
        ),
        (
            "alice:".to_owned(),
            Err(Error::Malformed("empty user or password")),
        ),
        (
            "x".repeat(2048),
            Err(Error::Malformed("2048 characters or longer")),
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(&Entry::parse(value), expected, "{value}");
    }
    assert_eq!(
        check_password(&format!("alice:{hash}"), b"secret"),
        Ok(true)
    );
    assert_eq!(
        check_password(&format!("alice:{hash}"), b"alice"),
        Ok(false)
    );
}

#[test]
fn unknown_schemes_and_plaintext_are_refused() {
    let cases: &[(&str, &str)] = &[
        ("secret", "plain"),
        ("alice:secret", "plain"),
        ("$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", "$1$"),
        ("$y$j9T$salt$hash", "$y$"),
        (
            "$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "$2x$",
        ),
        ("{SHA}secret", "plain"),
        ("$$x", "plain"),
    ];
    for (value, scheme) in cases {
        // Even the password equal to the stored text is refused.
        let password = value.rsplit(':').next().unwrap_or(value);
        assert_eq!(
            check_password(value, password.as_bytes()),
            Err(Error::UnsupportedScheme((*scheme).to_owned())),
            "{value}"
        );
    }
}

#[test]
fn malformed_hashes_of_known_schemes_are_errors() {
    let good = KNOWN[0].0;
    let cases = [
        "$2b$4$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW".to_owned(),
        "$2b$03$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW".to_owned(),
        "$2b$32$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW".to_owned(),
        good[..good.len() - 1].to_owned(),
        format!("{good}x"),
        good.replace('r', "!"),
        "$2b$".to_owned(),
        "$5$saltstring".to_owned(),
        "$5$saltstring$short".to_owned(),
        "$6$rounds=abc$salt$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1".to_owned(),
        "$6$rounds=5000".to_owned(),
    ];
    for hash in &cases {
        assert!(
            matches!(verify_hash(hash, b"secret"), Err(Error::InvalidHash { .. })),
            "{hash}: {:?}",
            verify_hash(hash, b"secret")
        );
    }
}

#[test]
fn encrypted_passwords_verify() {
    let hash = encrypt(b"p4ss word").unwrap();
    assert!(hash.starts_with("$2b$10$"), "{hash}");
    assert_eq!(hash.len(), 60);
    assert_eq!(check_password(&hash, b"p4ss word"), Ok(true));
    assert_eq!(check_password(&hash, b"p4ss"), Ok(false));
    assert_ne!(
        encrypt(b"p4ss word").unwrap(),
        hash,
        "a fresh salt each time"
    );
}

#[test]
fn auth_plain_credentials_are_checked() {
    let value = format!("alice:{}", KNOWN[4].0);
    let message = decode_base64(b"AGFsaWNlAEhlbGxvIHdvcmxkIQ==").unwrap();
    let credentials = parse_plain(&message).unwrap();
    assert_eq!(credentials.user, "alice");
    assert_eq!(check(&value, &credentials), Ok(true));
    let wrong = Credentials {
        user: "alice".into(),
        password: "hello world!".into(),
    };
    assert_eq!(check(&value, &wrong), Ok(false));
}
