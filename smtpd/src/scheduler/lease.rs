//! Sharing a queue with other daemons (SPEC.md 4.12): this daemon's
//! instance id, the length of its leases, how often it walks the store for
//! what other daemons accepted, and the renewal of a lease from the claim
//! until the driver is done with the envelope ([`keep`]).
//!
//! The driver uses this only when the queue reports that it is shared
//! ([`QueueBackend::shared`]: a proc-exec backend that registered `lease`).
//! It then claims every envelope before acting on it, forgets the ones
//! another daemon holds or already delivered, releases an envelope after a
//! temporary failure, leaves the deletion of messages to the backend, and
//! walks the store with `envelope-walk-free` every [`Sharing::rewalk`].
//!
//! The instance id is chosen once per start ([`instance_id`]):
//! `HOSTNAME:PID:RANDOM`, the host name reduced to the characters an
//! instance id allows, the process id and 8 random hex digits. A restarted
//! daemon is thus a new instance: the leases of its previous run are not
//! its own and run out, and two daemons on one host never share an id.

use std::sync::Arc;
use std::time::Duration;

use smtpd_sdk::proto::queue::MAX_INSTANCE_LEN;

use crate::queue::{Claim, EvpId, QueueBackend};

/// The lease length when none is configured (`smtpd --queue-lease`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);

/// How often a shared queue is walked when nothing is configured
/// (`smtpd --queue-rewalk`).
pub const DEFAULT_REWALK: Duration = Duration::from_secs(15);

/// How this daemon takes part in a shared queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharing {
    /// This daemon's instance id.
    pub instance: String,
    /// How long a claim holds an envelope; renewed every third of it.
    pub lease: Duration,
    /// How often the store is walked for envelopes other daemons accepted
    /// or whose lease ran out.
    pub rewalk: Duration,
}

impl Sharing {
    /// A fresh instance id with these timings (a lease of at least one
    /// second, at most a day; a walk at least every second).
    pub fn new(lease: Duration, rewalk: Duration) -> Self {
        Self {
            instance: instance_id(),
            lease: lease.clamp(Duration::from_secs(1), Duration::from_secs(86_400)),
            rewalk: rewalk.max(Duration::from_secs(1)),
        }
    }

    /// The lease in whole seconds, as a claim asks for it.
    pub fn lease_seconds(&self) -> u64 {
        self.lease.as_secs().max(1)
    }

    /// How often a lease is renewed during a delivery.
    pub fn renew_every(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(300))
    }
}

impl Default for Sharing {
    fn default() -> Self {
        Self::new(DEFAULT_LEASE, DEFAULT_REWALK)
    }
}

/// `HOSTNAME:PID:RANDOM` for this process (see the module overview).
pub fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    instance_from(host.trim(), std::process::id(), random_u32())
}

/// The instance id made of a host name, a process id and a random number.
fn instance_from(host: &str, pid: u32, random: u32) -> String {
    let tail = format!(":{pid}:{random:08x}");
    let mut host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    if host.is_empty() {
        host.push_str("smtpd");
    }
    host.truncate(MAX_INSTANCE_LEN - tail.len());
    format!("{host}{tail}")
}

fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() as u32
}

/// Keeps `evpid` leased to this daemon: a task renewing the lease every
/// [`Sharing::renew_every`] until it is aborted (when the driver is done
/// with the envelope: deleted, or updated and released). A lost lease is
/// logged: the envelope may then be delivered by another daemon as well
/// (SPEC.md 4.12).
pub fn keep(
    queue: Arc<dyn QueueBackend>,
    sharing: Arc<Sharing>,
    evpid: EvpId,
) -> tokio::task::AbortHandle {
    let every = sharing.renew_every();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            let renewed = queue
                .envelope_claim(evpid, &sharing.instance, sharing.lease_seconds())
                .await;
            match renewed {
                Ok(Claim::Granted) => {}
                Ok(lost) => tracing::warn!(
                    "evp:{evpid}: lease lost during the delivery ({lost:?}): \
                     another daemon may deliver it too"
                ),
                Err(e) => tracing::warn!("evp:{evpid}: cannot renew the lease: {e}"),
            }
        }
    });
    task.abort_handle()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Error, MsgId};
    use smtpd_sdk::proto::queue::is_instance_id;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// A shared store that only answers claims: granted until `lost`
    /// claims were made, then busy; every claim recorded.
    struct Claims {
        made: Mutex<Vec<(EvpId, String, u64)>>,
        grant: AtomicUsize,
    }

    fn refused() -> Error {
        Error::Backend {
            backend: "claims".into(),
            reason: "only claims are served".into(),
        }
    }

    #[async_trait::async_trait]
    impl QueueBackend for Claims {
        fn name(&self) -> &str {
            "claims"
        }
        async fn message_create(&self) -> Result<MsgId, Error> {
            Err(refused())
        }
        async fn message_write(&self, _: MsgId, _: u64, _: &[u8]) -> Result<(), Error> {
            Err(refused())
        }
        async fn message_commit(&self, _: MsgId, _: u64) -> Result<(), Error> {
            Err(refused())
        }
        async fn message_read(&self, _: MsgId, _: u64, _: u64) -> Result<Option<Vec<u8>>, Error> {
            Err(refused())
        }
        async fn message_delete(&self, _: MsgId) -> Result<(), Error> {
            Err(refused())
        }
        async fn message_corrupt(&self, _: MsgId) -> Result<bool, Error> {
            Err(refused())
        }
        async fn envelope_create(&self, _: MsgId, _: &[u8]) -> Result<EvpId, Error> {
            Err(refused())
        }
        async fn envelope_update(&self, _: EvpId, _: &[u8]) -> Result<bool, Error> {
            Err(refused())
        }
        async fn envelope_load(&self, _: EvpId) -> Result<Option<Vec<u8>>, Error> {
            Err(refused())
        }
        async fn envelope_delete(&self, _: EvpId) -> Result<(), Error> {
            Err(refused())
        }
        async fn envelope_walk(&self, _: EvpId) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
            Err(refused())
        }
        fn shared(&self) -> bool {
            true
        }
        async fn envelope_claim(
            &self,
            evpid: EvpId,
            instance: &str,
            seconds: u64,
        ) -> Result<Claim, Error> {
            let mut made = self.made.lock().unwrap();
            made.push((evpid, instance.to_owned(), seconds));
            if made.len() <= self.grant.load(Ordering::Relaxed) {
                Ok(Claim::Granted)
            } else {
                Ok(Claim::Busy)
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_lease_is_renewed_every_third_until_aborted() {
        let store = Arc::new(Claims {
            made: Mutex::new(Vec::new()),
            grant: AtomicUsize::new(2),
        });
        let sharing = Arc::new(Sharing::new(
            Duration::from_secs(30),
            Duration::from_secs(15),
        ));
        let evpid = EvpId::new(MsgId(0x0bad_cafe), 7);
        let keeper = keep(store.clone(), Arc::clone(&sharing), evpid);
        tokio::time::sleep(Duration::from_millis(9_990)).await;
        assert!(
            store.made.lock().unwrap().is_empty(),
            "no renewal before 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            *store.made.lock().unwrap(),
            vec![(evpid, sharing.instance.clone(), 30)]
        );
        // A lost lease is logged and the renewals go on.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(store.made.lock().unwrap().len(), 3);
        keeper.abort();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(store.made.lock().unwrap().len(), 3, "none after the abort");
    }

    #[test]
    fn instance_ids_are_valid_and_fresh() {
        let a = instance_id();
        assert!(is_instance_id(&a), "{a}");
        assert!(a.contains(&format!(":{}:", std::process::id())), "{a}");
        assert_eq!(
            instance_from("mx1.example.org", 42, 0xbeef),
            "mx1.example.org:42:0000beef"
        );
        assert_eq!(instance_from("", 1, 2), "smtpd:1:00000002");
        assert_eq!(instance_from("h\u{e9}te|x y", 1, 2), "htexy:1:00000002");
        let long = instance_from(&"h".repeat(200), u32::MAX, u32::MAX);
        assert!(is_instance_id(&long), "{long}");
        assert_eq!(long.len(), MAX_INSTANCE_LEN);
    }

    #[test]
    fn timings_are_bounded() {
        let s = Sharing::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(s.lease_seconds(), 1);
        assert_eq!(s.rewalk, Duration::from_secs(1));
        assert_eq!(s.renew_every(), Duration::from_secs(1) / 3);
        let s = Sharing::default();
        assert_eq!(s.lease_seconds(), 300);
        assert_eq!(s.renew_every(), Duration::from_secs(100));
    }
}
