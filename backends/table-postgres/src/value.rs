//! From result rows to the values of the table protocol.
//!
//! Columns arrive in PostgreSQL's binary format; [`Text`] reads those whose
//! text form is plain (text types, integers, booleans) as libpq's text
//! format would show them, so a `uid` column may be an `integer`. Which
//! column types a query may return is checked when it is prepared
//! ([`column_type_ok`]). The services' shapes are OpenSMTPD's: `alias` and
//! `mailaddrmap` join every row with `", "`, `credentials` is `user:hash`
//! (from two columns), `userinfo` is `uid:gid:home` (from three), the
//! others, and those two when their query returns one column, take the
//! first row's column.

use std::error::Error as StdError;

use smtpd_sdk::table::Service;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::Row;

/// A column read as text, or `None` for NULL.
pub(crate) struct Text(pub(crate) Option<String>);

impl<'a> FromSql<'a> for Text {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        let text = match *ty {
            Type::INT2 => i16::from_sql(ty, raw)?.to_string(),
            Type::INT4 => i32::from_sql(ty, raw)?.to_string(),
            Type::INT8 => i64::from_sql(ty, raw)?.to_string(),
            Type::OID => u32::from_sql(ty, raw)?.to_string(),
            Type::BOOL => if bool::from_sql(ty, raw)? { "t" } else { "f" }.to_owned(),
            _ => String::from_sql(ty, raw)?,
        };
        Ok(Self(Some(text)))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Self(None))
    }

    fn accepts(ty: &Type) -> bool {
        column_type_ok(ty)
    }
}

/// Whether [`Text`] reads columns of type `ty`.
pub(crate) fn column_type_ok(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID | Type::BOOL
    ) || <String as FromSql<'_>>::accepts(ty)
}

/// Column `i` of `row` as text; NULL is an error.
fn column(row: &Row, i: usize) -> Result<String, String> {
    match row.try_get::<_, Text>(i) {
        Ok(Text(Some(text))) => Ok(text),
        Ok(Text(None)) => Err(format!("column {} is NULL", i + 1)),
        Err(e) => Err(format!("column {}: {e}", i + 1)),
    }
}

/// The value of a lookup for `service` from its query's `rows`, or
/// `None` when there is no row.
pub(crate) fn lookup_value(service: Service, rows: &[Row]) -> Result<Option<String>, String> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let value = match service {
        Service::Alias | Service::Mailaddrmap => rows
            .iter()
            .map(|row| column(row, 0))
            .collect::<Result<Vec<_>, _>>()?
            .join(", "),
        Service::Credentials if first.len() == 2 => {
            format!("{}:{}", column(first, 0)?, column(first, 1)?)
        }
        Service::Userinfo if first.len() == 3 => format!(
            "{}:{}:{}",
            column(first, 0)?,
            column(first, 1)?,
            column(first, 2)?
        ),
        _ => column(first, 0)?,
    };
    Ok(Some(value))
}

/// The first column of every row of a `fetch_*` query.
pub(crate) fn fetch_values(rows: &[Row]) -> Result<Vec<String>, String> {
    rows.iter().map(|row| column(row, 0)).collect()
}
