//! The bytes of a notification: headers, OpenSMTPD's notice, the
//! `message/delivery-status` part and the original message or headers.

use std::io::{self, BufRead};

use super::{Action, BounceGroup, Report};

/// Writes the whole notification of `group`.
pub(super) fn write(
    group: &BounceGroup,
    mut original: impl BufRead,
    now: u64,
    boundary: u64,
) -> io::Result<Vec<u8>> {
    let headers = read_headers(&mut original)?;
    let boundary = format!("{boundary:016}/{}", group.smtpname);
    let mut out = String::with_capacity(4096);
    let mut line = |text: &str| {
        out.push_str(text);
        out.push_str("\r\n");
    };
    line(&format!(
        "Subject: Delivery status notification: {}",
        group.action.as_str()
    ));
    line(&format!(
        "From: Mailer Daemon <MAILER-DAEMON@{}>",
        group.smtpname
    ));
    line(&format!("To: {}", group.to));
    line(&format!("Date: {}", rfc5322_date(now)));
    line("Auto-Submitted: auto-replied");
    line("MIME-Version: 1.0");
    line("Content-Type: multipart/report; report-type=delivery-status;");
    line(&format!("\tboundary=\"{boundary}\""));
    line("");
    line("This is a MIME-encapsulated message.");
    line("");
    notice(group, &boundary, &mut line);
    status(group, &boundary, &headers, &mut line);
    let mut returned = Vec::new();
    for header in &headers {
        push_crlf_line(&mut returned, header);
    }
    if group.returns_full_message() {
        returned.extend_from_slice(b"\r\n");
        copy_body(&mut original, &mut returned)?;
    }
    line(&format!("--{boundary}"));
    if group.returns_full_message() {
        line("Content-Description: Undelivered Message");
        line("Content-Type: message/rfc822");
    } else {
        line("Content-Description: Message headers");
        line("Content-Type: text/rfc822-headers");
    }
    if !returned.is_ascii() {
        line("Content-Transfer-Encoding: 8bit");
    }
    line("");
    let mut data = out.into_bytes();
    data.extend_from_slice(&returned);
    data.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok(data)
}

/// The human-readable part, in OpenSMTPD's words.
fn notice(group: &BounceGroup, boundary: &str, line: &mut impl FnMut(&str)) {
    line(&format!("--{boundary}"));
    line("Content-Description: Notification");
    line("Content-Type: text/plain; charset=us-ascii");
    line("");
    line("    Hi!");
    line("");
    line("    This is the MAILER-DAEMON, please DO NOT REPLY to this email.");
    line("");
    match group.action {
        Action::Failed => {
            line("    An error has occurred while attempting to deliver a message for");
            line("    the following list of recipients:");
        }
        Action::Delayed => {
            line(&format!(
                "    A message is delayed for more than {} for the following",
                duration(group.delay)
            ));
            line("    list of recipients:");
        }
        Action::Delivered => {
            line("    Your message was successfully delivered to these recipients.")
        }
        Action::Relayed => line("    Your message was relayed to these recipients."),
    }
    line("");
    for report in &group.reports {
        line(&format!(
            "{}: {}",
            report.dest,
            notice_error(&report.errorline)
        ));
    }
    line("");
    if group.action == Action::Delayed {
        line("    Please note that this is only a temporary failure report.");
        line(&format!(
            "    The message is kept in the queue for up to {}.",
            duration(group.ttl)
        ));
        line("    You DO NOT NEED to re-send the message to these recipients.");
        line("");
    }
    line("    Below is a copy of the original message:");
    line("");
}

/// The `message/delivery-status` part (RFC 3464).
fn status(group: &BounceGroup, boundary: &str, headers: &[Vec<u8>], line: &mut impl FnMut(&str)) {
    line(&format!("--{boundary}"));
    line("Content-Description: Delivery Report");
    line("Content-Type: message/delivery-status");
    line("");
    line(&format!("Reporting-MTA: dns; {}", group.smtpname));
    if !group.envid.is_empty() {
        line(&format!(
            "Original-Envelope-Id: {}",
            xtext_decode(&group.envid)
        ));
    }
    if let Some(date) = arrival_date(headers) {
        line(&format!("Arrival-Date: {date}"));
    }
    line("");
    for report in &group.reports {
        recipient(group.action, report, line);
        line("");
    }
}

fn recipient(action: Action, report: &Report, line: &mut impl FnMut(&str)) {
    line(&format!("Final-Recipient: rfc822; {}", report.dest));
    match report.orcpt.split_once(';') {
        Some((kind, address)) => line(&format!(
            "Original-Recipient: {kind}; {}",
            xtext_decode(address)
        )),
        None if report.rcpt != report.dest => {
            line(&format!("Original-Recipient: rfc822; {}", report.rcpt));
        }
        None => {}
    }
    line(&format!("Action: {}", action.as_str()));
    line(&format!("Status: {}", report.status));
    if let Some(mta) = &report.remote_mta {
        line(&format!("Remote-MTA: dns; {mta}"));
    }
    if !report.errorline.is_empty() {
        let kind = if is_smtp_reply(&report.errorline) {
            "smtp"
        } else {
            "X-Local"
        };
        line(&format!("Diagnostic-Code: {kind}; {}", report.errorline));
    }
}

/// The error line as the notice shows it: a leading reply code starting
/// with 1 or 6 (internal codes) and its space are cut, as OpenSMTPD does.
fn notice_error(errorline: &str) -> &str {
    match errorline.as_bytes().first() {
        Some(b'1' | b'6') if errorline.len() > 4 => errorline.get(4..).unwrap_or(errorline),
        _ => errorline,
    }
}

/// Whether a line starts with an SMTP reply code (2xx to 5xx).
fn is_smtp_reply(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() >= 3
        && (b'2'..=b'5').contains(&b[0])
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && matches!(b.get(3), None | Some(b' ' | b'-'))
}

/// Decodes RFC 3461 xtext (`+XX` hex escapes).
fn xtext_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'+', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A duration as OpenSMTPD words it: whole seconds, minutes, hours or
/// days, singular for one.
pub(super) fn duration(seconds: u64) -> String {
    let (n, unit) = match seconds {
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 24 * 3600 => (s / 3600, "hour"),
        s => (s / (24 * 3600), "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The original's header lines (without line endings), up to the blank
/// line that ends them, which is consumed.
fn read_headers(original: &mut impl BufRead) -> io::Result<Vec<Vec<u8>>> {
    let mut headers = Vec::new();
    loop {
        let mut raw = Vec::new();
        if original.read_until(b'\n', &mut raw)? == 0 {
            return Ok(headers);
        }
        let text = strip_eol(&raw);
        if text.is_empty() {
            return Ok(headers);
        }
        headers.push(text.to_vec());
    }
}

/// Copies the rest of the original with CRLF line endings.
fn copy_body(original: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<()> {
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if original.read_until(b'\n', &mut raw)? == 0 {
            return Ok(());
        }
        push_crlf_line(out, strip_eol(&raw));
    }
}

fn push_crlf_line(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}

fn strip_eol(raw: &[u8]) -> &[u8] {
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The date of the topmost `Received:` header (the one this server
/// added when the message arrived): the text after its last `;`.
fn arrival_date(headers: &[Vec<u8>]) -> Option<String> {
    let start = headers
        .iter()
        .position(|h| h.len() > 9 && h[..9].eq_ignore_ascii_case(b"received:"))?;
    let mut field = String::from_utf8_lossy(&headers[start]).into_owned();
    for cont in headers[start + 1..]
        .iter()
        .take_while(|h| h.first().is_some_and(|b| *b == b' ' || *b == b'\t'))
    {
        field.push(' ');
        field.push_str(String::from_utf8_lossy(cont).trim());
    }
    let date = field.rsplit_once(';')?.1.trim();
    (!date.is_empty()).then(|| date.to_owned())
}

/// An RFC 5322 date in UTC: `Wed, 25 Nov 2026 15:40:09 +0000`.
pub(super) fn rfc5322_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01
/// (Howard Hinnant's algorithm, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
