//! The connection to the directory: one multiplexed LDAP connection shared
//! by every request (ldap3 matches answers to message ids, so many
//! searches are in flight at once), opened on first use and again after
//! the server went away. A request that finds the connection broken fails
//! (the daemon treats `error` as a temporary failure) and drops it, so the
//! next request connects anew. Connects and searches have a deadline.

use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use tokio::sync::Mutex;

use crate::config::Config;

/// One entry's values of the requested attributes, in request order.
pub(crate) type Values = Vec<Vec<String>>;

/// A directory: the settings and the current connection, if any.
pub(crate) struct Directory {
    url: String,
    bind: Option<(String, String)>,
    basedn: String,
    starttls: bool,
    ca_file: Option<std::path::PathBuf>,
    timeout: Duration,
    conn: Mutex<Option<Ldap>>,
}

impl Directory {
    /// A directory for `config`; nothing is connected yet.
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            url: config.url.clone(),
            bind: config.bind.clone(),
            basedn: config.basedn.clone(),
            starttls: config.starttls,
            ca_file: config.ca_file.clone(),
            timeout: config.timeout,
            conn: Mutex::new(None),
        }
    }

    /// The shared connection, connecting (and binding) first if there is
    /// none. Only one connect runs at a time; waiting requests reuse it.
    async fn handle(&self) -> Result<Ldap, String> {
        let mut slot = self.conn.lock().await;
        if let Some(ldap) = slot.as_mut() {
            if !ldap.is_closed() {
                return Ok(ldap.clone());
            }
            *slot = None;
        }
        let ldap = self.connect().await?;
        *slot = Some(ldap.clone());
        Ok(ldap)
    }

    async fn connect(&self) -> Result<Ldap, String> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.starttls);
        if let Some(path) = &self.ca_file {
            settings = settings.set_connector(connector(path)?);
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.url))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::warn!("LDAP connection ended: {e}");
            }
        });
        if let Some((dn, password)) = &self.bind {
            ldap.with_timeout(self.timeout)
                .simple_bind(dn, password)
                .await
                .and_then(ldap3::LdapResult::success)
                .map_err(|e| format!("bind as {dn:?} failed: {e}"))?;
        }
        tracing::info!(url = %self.url, "connected to the directory");
        Ok(ldap)
    }

    /// Forgets the connection (after an error that may mean it is broken).
    async fn drop_connection(&self) {
        let mut slot = self.conn.lock().await;
        if let Some(mut ldap) = slot.take() {
            // Best effort: the server may be gone already.
            let _ = tokio::time::timeout(Duration::from_millis(100), ldap.unbind()).await;
        }
    }

    /// Searches the subtree under the base DN with `filter`, returning, for
    /// each entry, the values of `attributes` (matched without regard to
    /// case), in that order.
    pub(crate) async fn search(
        &self,
        filter: &str,
        attributes: &[String],
    ) -> Result<Vec<Values>, String> {
        let mut ldap = self.handle().await?;
        let result = ldap
            .with_timeout(self.timeout)
            .search(&self.basedn, Scope::Subtree, filter, attributes)
            .await
            .and_then(ldap3::SearchResult::success);
        let (entries, _) = match result {
            Ok(found) => found,
            Err(e) => {
                if !matches!(e, LdapError::LdapResult { .. }) {
                    // A transport failure or a timeout: the connection is
                    // suspect, start afresh on the next request.
                    self.drop_connection().await;
                }
                return Err(format!("search {filter} failed: {e}"));
            }
        };
        tracing::debug!(filter, entries = entries.len(), "search");
        Ok(entries
            .into_iter()
            .map(|raw| {
                let entry = SearchEntry::construct(raw);
                attributes
                    .iter()
                    .map(|want| {
                        entry
                            .attrs
                            .iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case(want))
                            .map(|(_, values)| values.clone())
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .collect())
    }
}

/// A TLS connector trusting the PEM certificates of `path` (besides the
/// system's).
fn connector(path: &std::path::Path) -> Result<native_tls::TlsConnector, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut builder = native_tls::TlsConnector::builder();
    let text = String::from_utf8_lossy(&pem);
    let mut found = 0;
    for block in text.split_inclusive("-----END CERTIFICATE-----") {
        if !block.contains("-----BEGIN CERTIFICATE-----") {
            continue;
        }
        let cert = native_tls::Certificate::from_pem(block.trim().as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        builder.add_root_certificate(cert);
        found += 1;
    }
    if found == 0 {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    builder
        .build()
        .map_err(|e| format!("{}: {e}", path.display()))
}
