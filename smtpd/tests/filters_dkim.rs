//! A real third-party filter, unmodified: Debian's `filter-dkimsign`
//! (package opensmtpd-filter-dkimsign, linked with libopensmtpd) signs the
//! mail the built `smtpd` delivers to a maildir, and the signature is
//! verified with Python's dkimpy against the generated public key.
//!
//! `.ci/run` unpacks the package and its library with `dpkg -x` into
//! `target/debian-filters` (another directory may be given in
//! `SMTPD_DEBIAN_FILTERS`) and installs dkimpy into `target/py-venv`. The
//! RSA key is made by the `openssl` command. The verifier's DNS lookup is a
//! function returning the TXT record, so nothing asks a nameserver.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::backend::maildir_files;
use common::mail::{accepted_id, Smtpd, OUTSIDER};
use common::Scratch;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where the Debian packages were unpacked.
fn debian_filters() -> PathBuf {
    std::env::var_os("SMTPD_DEBIAN_FILTERS")
        .map_or_else(|| workspace().join("target/debian-filters"), PathBuf::from)
}

/// `filter-dkimsign` and the directory of `libopensmtpd.so.0`; fails
/// (never skips) with the way to get them when they are missing.
fn dkimsign() -> (PathBuf, PathBuf) {
    let root = debian_filters();
    let binary = root.join("usr/libexec/opensmtpd/filter-dkimsign");
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    assert!(
        binary.exists() && lib.join("libopensmtpd.so.0").exists(),
        "{} or libopensmtpd.so.0 is missing: this test needs Debian's filter-dkimsign, \
         unpacked as .ci/run does (apt-get download opensmtpd-filter-dkimsign libopensmtpd0; \
         dpkg -x each into target/debian-filters)",
        binary.display()
    );
    (binary, lib)
}

/// The test virtualenv's Python, which has dkimpy.
fn venv_python() -> PathBuf {
    let python = workspace().join("target/py-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: this test needs the test virtualenv with dkimpy, \
         made as .ci/run does (python3 -m venv target/py-venv; pip install dkimpy)",
        python.display()
    );
    python
}

/// Runs `program args`; its standard output, after asserting success.
fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} cannot run: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}\n{}{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A new 2048-bit RSA key in `DIR/dkim.key` (readable by the filter,
/// which runs as `_smtpd` when the tests run as root) and the base64 of
/// its public key, as the `p=` of a DKIM TXT record.
fn rsa_key(dir: &Scratch) -> (PathBuf, String) {
    let openssl = Path::new("openssl");
    let key = dir.0.join("dkim.key");
    let key_arg = key.to_str().unwrap();
    run(
        openssl,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            key_arg,
        ],
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let public = dir.0.join("dkim.pub");
    run(
        openssl,
        &[
            "pkey",
            "-in",
            key_arg,
            "-pubout",
            "-outform",
            "DER",
            "-out",
            public.to_str().unwrap(),
        ],
    );
    let python = venv_python();
    let p = run(
        &python,
        &[
            "-c",
            "import base64, sys; print(base64.b64encode(open(sys.argv[1], 'rb').read()).decode())",
            public.to_str().unwrap(),
        ],
    );
    (key, p.trim().to_owned())
}

/// What dkimpy says of `message` with the selector `s1._domainkey` of
/// example.org publishing `p`: `True` or `False`.
fn dkim_verify(dir: &Scratch, message: &str, p: &str) -> String {
    let path = dir.write("signed.eml", message);
    let script = "import sys, dkim\n\
        record = ('v=DKIM1; k=rsa; p=' + sys.argv[2]).encode()\n\
        def dnsfunc(name, timeout=5):\n\
        \x20   assert name == b's1._domainkey.example.org.', name\n\
        \x20   return record\n\
        print(dkim.verify(open(sys.argv[1], 'rb').read(), dnsfunc=dnsfunc))\n";
    run(&venv_python(), &["-c", script, path.to_str().unwrap(), p])
        .trim()
        .to_owned()
}

#[test]
fn filter_dkimsign_signs_and_dkimpy_verifies() {
    let (dkimsign, lib) = dkimsign();
    let dir = Scratch::new("filters-dkim", "sign");
    let (key, p) = rsa_key(&dir);
    let home = dir.0.join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    let vusers = dir.write("vusers", "@example.org vmail\n");
    let users = dir.write("users", &format!("vmail 65534:65534:{}\n", home.display()));
    let smtpd = Smtpd::start(&dir, |port| {
        format!(
            "table vusers file:{}\n\
             table users file:{}\n\
             filter dkim proc-exec \"/usr/bin/env LD_LIBRARY_PATH={} {} -d example.org -s s1 -k {}\"\n\
             listen on 127.0.0.1 port {port} hostname mx.test filter dkim\n\
             action \"deliver\" maildir \"{}/Maildir\" virtual <vusers> userbase <users>\n\
             match from any for domain example.org action \"deliver\"\n",
            vusers.display(),
            users.display(),
            lib.display(),
            dkimsign.display(),
            key.display(),
            home.display(),
        )
    });

    let mut c = smtpd.connect(OUTSIDER);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<alice@example.org>", "250");
    c.expect_code("RCPT TO:<bob@example.org>", "250");
    let reply = c.data(
        "From: Alice <alice@example.org>\r\n\
         To: Bob <bob@example.org>\r\n\
         Subject: signed by filter-dkimsign\r\n\
         Date: Wed, 25 Nov 2026 19:00:00 +0000\r\n\
         Message-ID: <dkim-test-1@example.org>\r\n\
         \r\n\
         Hello Bob,\r\n\
         ..a line that starts with a dot\r\n\
         \r\n\
         trailing spaces stay   \r\n",
    );
    accepted_id(&reply);
    c.expect_code("QUIT", "221");

    let delivered = maildir_files(&home.join("Maildir"), 1).remove(0);
    // Delivery adds Return-Path and Delivered-To above the signature.
    let headers = delivered.split("\n\n").next().unwrap();
    let signature = headers
        .split("\nDKIM-Signature: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no DKIM-Signature:\n{delivered}"));
    assert!(signature.starts_with("v=1; a=rsa-sha256; "), "{delivered}");
    assert!(signature.contains("d=example.org;"), "{delivered}");
    assert!(signature.contains("s=s1;"), "{delivered}");
    assert!(
        delivered.contains("\n.a line that starts with a dot\n"),
        "{delivered}"
    );
    assert_eq!(dkim_verify(&dir, &delivered, &p), "True", "{delivered}");

    // The verification is real: a changed body fails it.
    let tampered = delivered.replace("Hello Bob,", "Hello Eve,");
    assert_eq!(dkim_verify(&dir, &tampered, &p), "False");
}
