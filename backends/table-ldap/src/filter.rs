//! Search filter templates: `%u` (and its deprecated spelling `%s`) is the
//! key, `%h` the table name, `%%` a percent sign; any other `%x` makes the
//! filter unusable, as in OpenSMTPD. Substituted text is escaped per
//! RFC 4515 section 3 (`*`, `(`, `)`, `\` and NUL become `\XX`), so a key
//! such as `*)(uid=*` matches itself literally and cannot change the
//! filter's structure.

use std::fmt;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Key,
    TableName,
}

/// A parsed filter template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplateError {
    /// `%` followed by something other than `u`, `s`, `h` or `%`.
    UnknownPlaceholder(String),
    /// Parentheses that do not balance, or a filter not in parentheses.
    Unbalanced,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownPlaceholder(p) => write!(f, "unknown placeholder {p}"),
            Self::Unbalanced => f.write_str("a filter is one parenthesised expression"),
        }
    }
}

impl Template {
    /// Parses a template, checking its placeholders and parentheses.
    pub(crate) fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let part = match chars.next() {
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some('u' | 's') => Part::Key,
                Some('h') => Part::TableName,
                Some(other) => return Err(TemplateError::UnknownPlaceholder(format!("%{other}"))),
                None => return Err(TemplateError::UnknownPlaceholder("%".to_owned())),
            };
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(part);
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        let template = Self { parts };
        // The structure is that of the template alone: placeholders are
        // escaped, so checking with an empty key is exact.
        if !balanced(&template.expand("", "")) {
            return Err(TemplateError::Unbalanced);
        }
        Ok(template)
    }

    /// The filter for `key` in table `table`, both escaped per RFC 4515.
    pub(crate) fn expand(&self, key: &str, table: &str) -> String {
        self.render(&escape(key), table)
    }

    /// The filter with the key replaced by the wildcard `*` (a presence
    /// match: every entry the service could answer for), which `fetch`
    /// lists; nothing from a client is inserted.
    pub(crate) fn expand_any(&self, table: &str) -> String {
        self.render("*", table)
    }

    fn render(&self, key: &str, table: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Key => out.push_str(key),
                Part::TableName => out.push_str(&escape(table)),
            }
        }
        out
    }
}

/// RFC 4515 escaping of an assertion value.
pub(crate) fn escape(value: &str) -> String {
    ldap3::ldap_escape(value).into_owned()
}

/// One parenthesised expression, parentheses balanced (escapes are `\XX`
/// and hold none).
fn balanced(filter: &str) -> bool {
    if !(filter.starts_with('(') && filter.ends_with(')')) {
        return false;
    }
    let mut depth = 0usize;
    for (i, c) in filter.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = match depth.checked_sub(1) {
                    Some(d) => d,
                    None => return false,
                };
                if depth == 0 && i + 1 != filter.len() {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(template: &str, key: &str) -> String {
        Template::parse(template)
            .expect("valid")
            .expand(key, "users")
    }

    #[test]
    fn rfc4515_escapes() {
        // RFC 4515 section 4 examples and the five special characters.
        assert_eq!(
            escape("Parens R Us (for all your parenthetical needs)"),
            "Parens R Us \\28for all your parenthetical needs\\29"
        );
        assert_eq!(escape("*"), "\\2a");
        assert_eq!(escape("C:\\MyFile"), "C:\\5cMyFile");
        assert_eq!(escape("a\0b"), "a\\00b");
        assert_eq!(escape("plain.user@example.org"), "plain.user@example.org");
        // UTF-8 needs no escaping in the string form.
        assert_eq!(escape("café"), "café");
    }

    #[test]
    fn placeholders() {
        assert_eq!(expand("(mail=%u)", "a@b"), "(mail=a@b)");
        assert_eq!(expand("(mail=%s)", "a@b"), "(mail=a@b)");
        assert_eq!(expand("(&(t=%h)(k=%u))", "k"), "(&(t=users)(k=k))");
        assert_eq!(expand("(n=100%%)", "k"), "(n=100%)");
        assert_eq!(expand("(|(a=%u)(b=%u))", "x"), "(|(a=x)(b=x))");
    }

    #[test]
    fn injection_stays_a_value() {
        assert_eq!(
            expand("(&(objectClass=mailAlias)(mail=%u))", "*)(uid=*"),
            "(&(objectClass=mailAlias)(mail=\\2a\\29\\28uid=\\2a))"
        );
        assert_eq!(
            expand("(uid=%u)", "x)(|(uid=*)"),
            "(uid=x\\29\\28|\\28uid=\\2a\\29)"
        );
        // The expansion still parses as a filter with one equality test.
        let f = expand("(uid=%u)", "*)(uid=*");
        assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
    }

    #[test]
    fn bad_templates() {
        assert_eq!(
            Template::parse("(a=%x)"),
            Err(TemplateError::UnknownPlaceholder("%x".to_owned()))
        );
        assert!(Template::parse("(a=%").is_err());
        assert_eq!(Template::parse("a=%u"), Err(TemplateError::Unbalanced));
        assert_eq!(Template::parse("(a=%u"), Err(TemplateError::Unbalanced));
        assert_eq!(
            Template::parse("(a=b)(c=d)"),
            Err(TemplateError::Unbalanced)
        );
    }
}
