//! The queue's tables and every statement on them, for one schema.
//!
//! - `messages`: one row per message: `msgid` (1 to 2^31 - 1, so that
//!   every envelope id, msgid in the upper half, is a positive `bigint`
//!   and ids sort as numbers), `committed`, `corrupt` (moved aside), the
//!   `size` written so far and `created` (to expire messages left
//!   uncommitted by a daemon that died).
//! - `chunks`: the content, one row per `message-write` (`off`, `data`),
//!   so that no statement handles a whole message.
//! - `envelopes`: `evpid`, `msgid`, `data` and the lease: `lease_owner`
//!   (a daemon instance id) and `lease_expires` (the database server's
//!   clock).
//!
//! Deleting a message deletes its chunks and envelopes (`ON DELETE
//! CASCADE`).

/// A prepared statement of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Q {
    /// `$1` msgid: a new uncommitted message (0 rows when the id is taken).
    CreateMessage,
    /// `$1` msgid: `committed`, `corrupt`, `size`.
    MessageState,
    /// `$1` msgid, `$2` offset, `$3` data: appends a chunk when the
    /// message is uncommitted and holds exactly `$2` bytes.
    Write,
    /// `$1` msgid, `$2` size: commits when exactly `$2` bytes were written.
    Commit,
    /// `$1` msgid, `$2` offset, `$3` end: the chunks overlapping
    /// `[$2, $3)` of a committed message (`off`, `data`), or one row of
    /// nulls when none does; no row when there is no such message.
    Read,
    /// `$1` msgid: removes a message that is not moved aside.
    DeleteMessage,
    /// `$1` msgid: moves a message aside.
    Corrupt,
    /// `$1` evpid, `$2` msgid, `$3` data: a new envelope (0 rows when the
    /// message is unknown or the id taken).
    CreateEnvelope,
    /// `$1` evpid, `$2` data: replaces a visible envelope.
    Update,
    /// `$1` evpid: a visible envelope's data.
    Load,
    /// `$1` msgid: locks the message row (deletions of one message's
    /// envelopes take turns).
    LockMessage,
    /// `$1` evpid: removes an envelope.
    DeleteEnvelope,
    /// `$1` msgid: removes a committed message left without envelopes.
    DeleteEmptyMessage,
    /// `$1` after: the next visible envelope (`evpid`, `data`).
    Walk,
    /// `$1` after, `$2` instance: the next visible envelope no other
    /// instance holds a live lease on.
    WalkFree,
    /// `$1` evpid, `$2` instance, `$3` seconds: takes or renews the lease
    /// when free, expired or the instance's; rows locked by another
    /// claim at this moment are skipped (`FOR UPDATE SKIP LOCKED`).
    Claim,
    /// `$1` evpid, `$2` instance: ends the instance's lease.
    Release,
    /// `$1` seconds: removes uncommitted messages older than that.
    ExpireUncommitted,
}

impl Q {
    /// Every statement, prepared on each connection.
    pub(crate) const ALL: [Self; 18] = [
        Self::CreateMessage,
        Self::MessageState,
        Self::Write,
        Self::Commit,
        Self::Read,
        Self::DeleteMessage,
        Self::Corrupt,
        Self::CreateEnvelope,
        Self::Update,
        Self::Load,
        Self::LockMessage,
        Self::DeleteEnvelope,
        Self::DeleteEmptyMessage,
        Self::Walk,
        Self::WalkFree,
        Self::Claim,
        Self::Release,
        Self::ExpireUncommitted,
    ];

    /// The statement's SQL over schema `s` (a checked identifier).
    pub(crate) fn sql(self, s: &str) -> String {
        const VISIBLE: &str = "m.msgid = e.msgid AND m.committed AND NOT m.corrupt";
        const FREE: &str =
            "(e.lease_owner IS NULL OR e.lease_owner = $2 OR e.lease_expires <= now())";
        match self {
            Self::CreateMessage => {
                format!("INSERT INTO {s}.messages (msgid) VALUES ($1) ON CONFLICT DO NOTHING")
            }
            Self::MessageState => {
                format!("SELECT committed, corrupt, size FROM {s}.messages WHERE msgid = $1")
            }
            Self::Write => format!(
                "WITH m AS (UPDATE {s}.messages SET size = size + octet_length($3::bytea) \
                 WHERE msgid = $1 AND NOT committed AND NOT corrupt AND size = $2 \
                 RETURNING msgid) \
                 INSERT INTO {s}.chunks (msgid, off, data) SELECT msgid, $2, $3 FROM m"
            ),
            Self::Commit => format!(
                "UPDATE {s}.messages SET committed = true \
                 WHERE msgid = $1 AND NOT committed AND NOT corrupt AND size = $2"
            ),
            Self::Read => format!(
                "SELECT c.off, c.data FROM {s}.messages m LEFT JOIN {s}.chunks c \
                 ON c.msgid = m.msgid AND c.off < $3 AND c.off >= COALESCE(\
                 (SELECT max(off) FROM {s}.chunks WHERE msgid = $1 AND off <= $2), 0) \
                 WHERE m.msgid = $1 AND m.committed AND NOT m.corrupt ORDER BY c.off"
            ),
            Self::DeleteMessage => {
                format!("DELETE FROM {s}.messages WHERE msgid = $1 AND NOT corrupt")
            }
            Self::Corrupt => {
                format!("UPDATE {s}.messages SET corrupt = true WHERE msgid = $1 AND NOT corrupt")
            }
            Self::CreateEnvelope => format!(
                "INSERT INTO {s}.envelopes (evpid, msgid, data) \
                 SELECT $1, msgid, $3 FROM {s}.messages WHERE msgid = $2 AND NOT corrupt \
                 ON CONFLICT DO NOTHING"
            ),
            Self::Update => format!(
                "UPDATE {s}.envelopes e SET data = $2 FROM {s}.messages m \
                 WHERE e.evpid = $1 AND {VISIBLE}"
            ),
            Self::Load => format!(
                "SELECT e.data FROM {s}.envelopes e, {s}.messages m \
                 WHERE e.evpid = $1 AND {VISIBLE}"
            ),
            Self::LockMessage => {
                format!("SELECT 1 FROM {s}.messages WHERE msgid = $1 FOR UPDATE")
            }
            Self::DeleteEnvelope => format!("DELETE FROM {s}.envelopes WHERE evpid = $1"),
            Self::DeleteEmptyMessage => format!(
                "DELETE FROM {s}.messages m WHERE m.msgid = $1 AND m.committed \
                 AND NOT m.corrupt \
                 AND NOT EXISTS (SELECT 1 FROM {s}.envelopes e WHERE e.msgid = $1)"
            ),
            Self::Walk => format!(
                "SELECT e.evpid, e.data FROM {s}.envelopes e, {s}.messages m \
                 WHERE e.evpid > $1 AND {VISIBLE} ORDER BY e.evpid LIMIT 1"
            ),
            Self::WalkFree => format!(
                "SELECT e.evpid, e.data FROM {s}.envelopes e, {s}.messages m \
                 WHERE e.evpid > $1 AND {VISIBLE} AND {FREE} ORDER BY e.evpid LIMIT 1"
            ),
            Self::Claim => format!(
                "WITH c AS (SELECT e.evpid FROM {s}.envelopes e, {s}.messages m \
                 WHERE e.evpid = $1 AND {VISIBLE} AND {FREE} \
                 FOR UPDATE OF e SKIP LOCKED) \
                 UPDATE {s}.envelopes e SET lease_owner = $2, \
                 lease_expires = now() + make_interval(secs => $3) \
                 FROM c WHERE e.evpid = c.evpid"
            ),
            Self::Release => format!(
                "UPDATE {s}.envelopes SET lease_owner = NULL, lease_expires = NULL \
                 WHERE evpid = $1 AND lease_owner = $2"
            ),
            Self::ExpireUncommitted => format!(
                "DELETE FROM {s}.messages WHERE NOT committed \
                 AND created < now() - make_interval(secs => $1)"
            ),
        }
    }
}

/// The schema, created when missing. Several backends may start at once
/// on one database: a transaction-level advisory lock makes them take
/// turns.
pub(crate) fn schema(s: &str) -> String {
    format!(
        "SET client_min_messages = warning;\n\
         BEGIN;\n\
         SELECT pg_advisory_xact_lock(hashtext('smtpd queue schema {s}'));\n\
         CREATE SCHEMA IF NOT EXISTS {s};\n\
         CREATE TABLE IF NOT EXISTS {s}.messages (\n\
         \x20   msgid bigint PRIMARY KEY CHECK (msgid > 0 AND msgid < 2147483648),\n\
         \x20   committed boolean NOT NULL DEFAULT false,\n\
         \x20   corrupt boolean NOT NULL DEFAULT false,\n\
         \x20   size bigint NOT NULL DEFAULT 0,\n\
         \x20   created timestamptz NOT NULL DEFAULT now()\n\
         );\n\
         CREATE TABLE IF NOT EXISTS {s}.chunks (\n\
         \x20   msgid bigint NOT NULL REFERENCES {s}.messages (msgid) ON DELETE CASCADE,\n\
         \x20   off bigint NOT NULL,\n\
         \x20   data bytea NOT NULL,\n\
         \x20   PRIMARY KEY (msgid, off)\n\
         );\n\
         CREATE TABLE IF NOT EXISTS {s}.envelopes (\n\
         \x20   evpid bigint PRIMARY KEY,\n\
         \x20   msgid bigint NOT NULL REFERENCES {s}.messages (msgid) ON DELETE CASCADE,\n\
         \x20   data bytea NOT NULL,\n\
         \x20   lease_owner text,\n\
         \x20   lease_expires timestamptz\n\
         );\n\
         CREATE INDEX IF NOT EXISTS envelopes_msgid ON {s}.envelopes (msgid);\n\
         COMMIT;\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_names_the_schema_and_nothing_else() {
        for q in Q::ALL {
            let sql = q.sql("mx_queue");
            assert!(sql.contains("mx_queue."), "{q:?}: {sql}");
            assert!(!sql.contains("{s}"), "{q:?}");
        }
        let schema = schema("mx_queue");
        assert!(schema.contains("CREATE SCHEMA IF NOT EXISTS mx_queue;"));
        assert!(schema.contains("\nBEGIN;\n") && schema.ends_with("COMMIT;\n"));
    }

    #[test]
    fn claims_skip_locked_rows_and_respect_live_leases() {
        let claim = Q::Claim.sql("q");
        assert!(claim.contains("FOR UPDATE OF e SKIP LOCKED"));
        assert!(claim.contains("e.lease_expires <= now()"));
        assert!(Q::WalkFree.sql("q").contains("e.lease_owner = $2"));
    }
}
