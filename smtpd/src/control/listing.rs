//! What `smtpctl show tables` prints: one line per table under a header,
//! in columns aligned on the widest entry.
//!
//! ```text
//! NAME     BACKEND                          PID    REQUESTS  ERRORS  RESTARTS  P99
//! aliases  file:/etc/mail/aliases           -      -         -       -         -
//! users    proc-exec "table-sqlite u.conf"  31337  1204      2       0         1.8ms
//! ```
//!
//! Counters belong to tables served by a program; other tables show `-`,
//! as does the pid of a program that is not running (being restarted) and
//! the latency of a table that has answered nothing yet.

use super::protocol::{FilterStatus, TableStatus};

const HEADER: [&str; 7] = [
    "NAME", "BACKEND", "PID", "REQUESTS", "ERRORS", "RESTARTS", "P99",
];

/// The whole listing, a newline after each line.
pub fn tables(tables: &[TableStatus]) -> String {
    let rows: Vec<[String; 7]> = std::iter::once(HEADER.map(str::to_owned))
        .chain(tables.iter().map(row))
        .collect();
    columns(&rows)
}

/// What `smtpctl show filters` prints: the same columns with the process's
/// state after its command, and the lines sent that answer nothing:
/// REQUESTS counts filter requests (one per phase asked), REPORTS report
/// lines, DATA-LINES data-lines; ERRORS counts failed requests and
/// messages whose data-lines failed there; P99 is the requests' latency.
///
/// ```text
/// NAME   COMMAND                      STATE    PID    REQUESTS  REPORTS  DATA-LINES  ERRORS  RESTARTS  P99
/// guard  proc-exec "filter-guard -v"  running  31338  88        130      4012        0       1         410us
/// ```
pub fn filters(filters: &[FilterStatus]) -> String {
    let header = [
        "NAME",
        "COMMAND",
        "STATE",
        "PID",
        "REQUESTS",
        "REPORTS",
        "DATA-LINES",
        "ERRORS",
        "RESTARTS",
        "P99",
    ];
    let dash = || "-".to_owned();
    let rows: Vec<[String; 10]> = std::iter::once(header.map(str::to_owned))
        .chain(filters.iter().map(|f| {
            let p = &f.proc;
            [
                f.name.clone(),
                f.command.clone(),
                f.state.clone(),
                p.pid.map_or_else(dash, |pid| pid.to_string()),
                p.requests.to_string(),
                f.reports.to_string(),
                f.data_lines.to_string(),
                p.errors.to_string(),
                p.restarts.to_string(),
                p.p99_micros.map_or_else(dash, latency),
            ]
        }))
        .collect();
    columns(&rows)
}

/// Rows in columns aligned on the widest cell, a newline after each.
fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn row(table: &TableStatus) -> [String; 7] {
    let dash = || "-".to_owned();
    let counters = match &table.proc {
        Some(p) => [
            p.pid.map_or_else(dash, |pid| pid.to_string()),
            p.requests.to_string(),
            p.errors.to_string(),
            p.restarts.to_string(),
            p.p99_micros.map_or_else(dash, latency),
        ],
        None => [dash(), dash(), dash(), dash(), dash()],
    };
    let [pid, requests, errors, restarts, p99] = counters;
    [
        table.name.clone(),
        table.backend.clone(),
        pid,
        requests,
        errors,
        restarts,
        p99,
    ]
}

/// A latency in microseconds, with a unit that keeps it short: `850us`,
/// `1.8ms`, `42ms`, `2.50s`.
pub fn latency(micros: u64) -> String {
    match micros {
        0..=999 => format!("{micros}us"),
        1_000..=9_949 => format!("{:.1}ms", micros as f64 / 1e3),
        9_950..=999_499 => format!("{}ms", (micros + 500) / 1_000),
        _ => format!("{:.2}s", micros as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::super::protocol::ProcCounters;
    use super::*;

    #[test]
    fn filters_show_their_state() {
        let listing = filters(&[
            FilterStatus {
                name: "guard".into(),
                command: "proc-exec \"filter-guard -v\"".into(),
                state: "running".into(),
                proc: ProcCounters {
                    pid: Some(31338),
                    requests: 88,
                    errors: 0,
                    restarts: 1,
                    p99_micros: Some(410),
                },
                reports: 130,
                data_lines: 4012,
            },
            FilterStatus {
                name: "dkim".into(),
                command: "proc-exec \"d\"".into(),
                state: "down (the backend exited)".into(),
                proc: ProcCounters::default(),
                reports: 0,
                data_lines: 0,
            },
        ]);
        assert_eq!(
            listing,
            "NAME   COMMAND                      STATE                      PID    REQUESTS  REPORTS  DATA-LINES  ERRORS  RESTARTS  P99\n\
             guard  proc-exec \"filter-guard -v\"  running                    31338  88        130      4012        0       1         410us\n\
             dkim   proc-exec \"d\"                down (the backend exited)  -      0         0        0           0       0         -\n"
        );
    }

    #[test]
    fn columns_align_on_the_widest_cell() {
        let listing = tables(&[
            TableStatus {
                name: "aliases".into(),
                backend: "file:/etc/mail/aliases".into(),
                proc: None,
            },
            TableStatus {
                name: "users".into(),
                backend: "proc-exec \"table-sqlite u.conf\"".into(),
                proc: Some(ProcCounters {
                    pid: Some(31337),
                    requests: 1204,
                    errors: 2,
                    restarts: 0,
                    p99_micros: Some(1_800),
                }),
            },
            TableStatus {
                name: "down".into(),
                backend: "proc-exec \"t\"".into(),
                proc: Some(ProcCounters {
                    restarts: 3,
                    ..ProcCounters::default()
                }),
            },
        ]);
        assert_eq!(
            listing,
            "NAME     BACKEND                          PID    REQUESTS  ERRORS  RESTARTS  P99\n\
             aliases  file:/etc/mail/aliases           -      -         -       -         -\n\
             users    proc-exec \"table-sqlite u.conf\"  31337  1204      2       0         1.8ms\n\
             down     proc-exec \"t\"                    -      0         0       3         -\n"
        );
    }

    #[test]
    fn no_tables_is_just_the_header() {
        assert_eq!(
            tables(&[]),
            "NAME  BACKEND  PID  REQUESTS  ERRORS  RESTARTS  P99\n"
        );
    }

    #[test]
    fn latencies_keep_two_or_three_digits() {
        let cases = [
            (0, "0us"),
            (999, "999us"),
            (1_000, "1.0ms"),
            (1_849, "1.8ms"),
            (9_949, "9.9ms"),
            (9_950, "10ms"),
            (41_600, "42ms"),
            (999_499, "999ms"),
            (999_500, "1.00s"),
            (1_000_000, "1.00s"),
            (2_504_000, "2.50s"),
        ];
        for (micros, text) in cases {
            assert_eq!(latency(micros), text, "{micros}");
        }
    }
}
