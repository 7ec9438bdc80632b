//! A table whose backend is down: every check and lookup fails temporarily.
//! Tests of the table's callers use it to show that a table error stays an
//! error (a 4xx, a retry) and never turns into a miss.

use async_trait::async_trait;

use super::{Error, Service, Table};

/// A table named `name` whose every check and lookup answers
/// [`Error::Unavailable`].
pub(crate) struct UnavailableTable(pub(crate) String);

#[async_trait]
impl Table for UnavailableTable {
    fn name(&self) -> &str {
        &self.0
    }

    fn backend(&self) -> String {
        "unavailable".to_owned()
    }

    async fn check(&self, _: Service, _: &str) -> Result<bool, Error> {
        Err(self.error())
    }

    async fn lookup(&self, _: Service, _: &str) -> Result<Option<String>, Error> {
        Err(self.error())
    }

    async fn update(&self) -> Result<(), Error> {
        Ok(())
    }
}

impl UnavailableTable {
    fn error(&self) -> Error {
        Error::Unavailable {
            table: self.0.clone(),
            reason: "backend down".to_owned(),
        }
    }
}
