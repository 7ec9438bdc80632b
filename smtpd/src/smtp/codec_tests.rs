//! Tests of the line codec: command framing, limits, and DATA (the
//! smuggling battery).

use super::*;

/// Feeds `input` in one piece, then at EOF, and collects the frames.
fn frames(codec: &mut LineCodec, input: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(frame) = codec.decode(&mut buf).unwrap() {
        out.push(frame);
    }
    while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
        out.push(frame);
    }
    out
}

/// Feeds `input` one byte at a time.
fn frames_bytewise(codec: &mut LineCodec, input: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for &byte in input {
        buf.extend_from_slice(&[byte]);
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            out.push(frame);
        }
    }
    out
}

fn line(text: &[u8]) -> Frame {
    Frame::Line(Bytes::copy_from_slice(text))
}

fn data(text: &[u8]) -> Frame {
    Frame::Data(Bytes::copy_from_slice(text))
}

#[test]
fn command_lines() {
    use LineError::*;
    let cases: Vec<(&[u8], Vec<Frame>)> = vec![
        (b"EHLO a\r\n", vec![line(b"EHLO a")]),
        (b"EHLO a\r\nQUIT\r\n", vec![line(b"EHLO a"), line(b"QUIT")]),
        (b"\r\n", vec![line(b"")]),
        (b"NOOP \xff\xfe\r\n", vec![line(b"NOOP \xff\xfe")]),
        (b"EHLO a\n", vec![Frame::Invalid(BareNewline)]),
        (
            b"EHLO a\nQUIT\r\n",
            vec![Frame::Invalid(BareNewline), line(b"QUIT")],
        ),
        (
            b"MAIL FROM:<a@b>\rRCPT TO:<c@d>\r\n",
            vec![Frame::Invalid(BareNewline)],
        ),
        (b"EHLO a\r\r\n", vec![Frame::Invalid(BareNewline)]),
        (b"QUIT", vec![]),
        (b"QUIT\r", vec![]),
    ];
    for (input, expected) in cases {
        let name = String::from_utf8_lossy(input);
        assert_eq!(
            frames(&mut LineCodec::new(100), input),
            expected,
            "{name:?}"
        );
        assert_eq!(
            frames_bytewise(&mut LineCodec::new(100), input)
                .into_iter()
                .collect::<Vec<_>>(),
            expected,
            "bytewise {name:?}"
        );
    }
}

#[test]
fn long_lines_are_reported_once_and_skipped() {
    let mut input = vec![b'x'; 50];
    input.extend_from_slice(b"\r\nNOOP\r\n");
    let expected = vec![Frame::Invalid(LineError::TooLong), line(b"NOOP")];
    assert_eq!(frames(&mut LineCodec::new(10), &input), expected);
    assert_eq!(frames_bytewise(&mut LineCodec::new(10), &input), expected);
    // Exactly at the limit passes; one more does not.
    let at_limit = b"0123456789\r\n";
    assert_eq!(
        frames(&mut LineCodec::new(10), at_limit),
        vec![line(b"0123456789")]
    );
    assert_eq!(
        frames_bytewise(&mut LineCodec::new(10), at_limit),
        vec![line(b"0123456789")]
    );
    let over = b"0123456789a\r\nQUIT\r\n";
    let expected = vec![Frame::Invalid(LineError::TooLong), line(b"QUIT")];
    assert_eq!(frames(&mut LineCodec::new(10), over), expected);
    assert_eq!(frames_bytewise(&mut LineCodec::new(10), over), expected);
    assert_eq!(LineCodec::new(10).max_len(), 10);
}

/// Runs a DATA phase over `body` (what follows the DATA command's CRLF),
/// then the command lines after it.
fn data_phase(body: &[u8], max_size: u64, bytewise: bool) -> Vec<Frame> {
    let mut codec = LineCodec::new(100);
    codec.start_data(max_size);
    assert!(codec.in_data());
    if bytewise {
        frames_bytewise(&mut codec, body)
    } else {
        frames(&mut codec, body)
    }
}

fn check_data(body: &[u8], max_size: u64, expected: &[Frame]) {
    let name = String::from_utf8_lossy(body);
    assert_eq!(data_phase(body, max_size, false), expected, "{name:?}");
    assert_eq!(
        data_phase(body, max_size, true),
        expected,
        "bytewise {name:?}"
    );
}

fn end(size: u64) -> Frame {
    Frame::DataEnd(DataEnd::Complete { size })
}

#[test]
fn data_unstuffing_and_size() {
    check_data(
        b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n",
        1000,
        &[
            data(b"Subject: x"),
            data(b""),
            data(b".leading dot"),
            end(12 + 2 + 14),
            line(b"QUIT"),
        ],
    );
    check_data(b".\r\n", 1000, &[end(0)]);
    check_data(
        b"\x80\xff 8-bit\r\n.\r\n",
        1000,
        &[data(b"\x80\xff 8-bit"), end(10)],
    );
    check_data(b"..\r\n.\r\n", 1000, &[data(b"."), end(3)]);
    check_data(b". \r\n.\r\n", 1000, &[data(b" "), end(3)]);
}

#[test]
fn data_too_large_is_discarded_to_the_end() {
    check_data(
        b"0123456789\r\n0123456789\r\nmore\r\n.\r\nQUIT\r\n",
        20,
        &[
            data(b"0123456789"),
            Frame::DataEnd(DataEnd::TooLarge),
            line(b"QUIT"),
        ],
    );
    // Exactly at the limit is fine.
    check_data(b"0123456789\r\n.\r\n", 12, &[data(b"0123456789"), end(12)]);
}

#[test]
fn data_line_too_long() {
    let mut body = vec![b'y'; 300];
    body.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
    check_data(
        &body,
        10_000,
        &[Frame::DataEnd(DataEnd::LineTooLong), line(b"QUIT")],
    );
    // A long line ending in a bare LF: the `.` after it does not end data.
    let mut body = vec![b'y'; 300];
    body.extend_from_slice(b"\n.\r\nMAIL FROM:<x@y>\r\n.\r\n");
    check_data(&body, 10_000, &[Frame::DataEnd(DataEnd::LineTooLong)]);
}

/// SMTP smuggling: only CRLF.CRLF ends data; every other form of a lone
/// dot is kept inside the (refused) message, so the commands after it are
/// never read as commands.
#[test]
fn smuggling_battery() {
    let smuggled = b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n";
    let prefixes: &[&[u8]] = &[
        b"Subject: a\r\n\n.\n",
        b"Subject: a\r\n\n.\r\n",
        b"Subject: a\n.\r\n",
        b"Subject: a\r\n.\n",
        b"Subject: a\r\r.\r\r",
        b"Subject: a\r.\r",
        b"Subject: a\r.\r\n",
        b"Subject: a\r\n.\r",
        b"Subject: a\r\n\x00.\r\n",
        b"Subject: a\r\n .\r\n",
    ];
    for prefix in prefixes {
        let mut body = prefix.to_vec();
        body.extend_from_slice(smuggled);
        body.extend_from_slice(b"x\r\n.\r\nQUIT\r\n");
        for bytewise in [false, true] {
            let frames = data_phase(&body, 10_000, bytewise);
            let name = String::from_utf8_lossy(prefix);
            let ends: Vec<_> = frames
                .iter()
                .filter(|f| matches!(f, Frame::DataEnd(_)))
                .collect();
            assert_eq!(ends.len(), 1, "{name:?}: {frames:?}");
            assert!(
                !frames
                    .iter()
                    .any(|f| matches!(f, Frame::Line(l) if l.starts_with(b"MAIL"))),
                "{name:?} smuggled a command: {frames:?}"
            );
            assert_eq!(frames.last(), Some(&line(b"QUIT")), "{name:?}");
        }
    }
    // The bare newline variants are refused as a whole.
    check_data(
        b"a\r\n\n.\n\r\n.\r\n",
        10_000,
        &[data(b"a"), Frame::DataEnd(DataEnd::BareNewline)],
    );
    check_data(
        b"a\rb\r\n.\r\n",
        10_000,
        &[Frame::DataEnd(DataEnd::BareNewline)],
    );
}

#[test]
fn eof_in_data_gives_no_end() {
    let frames = data_phase(b"partial\r\nno end", 1000, false);
    assert_eq!(frames, vec![data(b"partial")]);
}

#[test]
fn encodes_replies() {
    let mut codec = LineCodec::new(10);
    let mut dst = BytesMut::new();
    codec.encode(&Reply::ok(), &mut dst).unwrap();
    codec.encode(&Reply::bye(), &mut dst).unwrap();
    assert_eq!(&dst[..], b"250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n");
}

proptest::proptest! {
    /// Whatever the bytes and however they are split, decoding never
    /// panics, and a DATA phase never yields a command before its end.
    #[test]
    fn arbitrary_input(input in proptest::collection::vec(proptest::sample::select(b"\r\n.ab".to_vec()), 0..200), split in 0usize..200) {
        let mut codec = LineCodec::new(8);
        codec.start_data(50);
        let split = split.min(input.len());
        let mut buf = BytesMut::from(&input[..split]);
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf).unwrap() { out.push(f); }
        buf.extend_from_slice(&input[split..]);
        while let Some(f) = codec.decode(&mut buf).unwrap() { out.push(f); }
        let first_end = out.iter().position(|f| matches!(f, Frame::DataEnd(_))).unwrap_or(out.len());
        proptest::prop_assert!(out[..first_end].iter().all(|f| matches!(f, Frame::Data(_))));
        if first_end < out.len() {
            // The raw input holds CRLF.CRLF (counting the DATA line's CRLF).
            let mut raw = b"\r\n".to_vec();
            raw.extend_from_slice(&input);
            proptest::prop_assert!(raw.windows(5).any(|w| w == b"\r\n.\r\n"));
        }
    }
}
