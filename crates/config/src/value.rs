//! Typed reading of property values with Kafka's `ConfigDef` rules and
//! wording: values are trimmed, numbers are Java `int`/`long`/`double`,
//! booleans are `true`/`false` in any case, and range failures say
//! `Value must be at least N`. Shared by every typed config of the crate.

use crate::error::ConfigError;
use crate::properties::Properties;

/// An inclusive range a number must lie in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    pub(crate) at_least: Option<i64>,
    pub(crate) at_most: Option<i64>,
}

impl Range {
    pub(crate) const ANY: Range = Range {
        at_least: None,
        at_most: None,
    };

    pub(crate) const fn at_least(min: i64) -> Range {
        Range {
            at_least: Some(min),
            at_most: None,
        }
    }

    pub(crate) const fn between(min: i64, max: i64) -> Range {
        Range {
            at_least: Some(min),
            at_most: Some(max),
        }
    }

    fn check(self, n: i64) -> Result<(), String> {
        match (self.at_least, self.at_most) {
            (Some(min), _) if n < min => Err(format!("Value must be at least {min}")),
            (_, Some(max)) if n > max => Err(format!("Value must be no more than {max}")),
            _ => Ok(()),
        }
    }
}

/// The type (and validator) of a config key, for keys checked but not read
/// into a typed field, and for topic-level configs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Int(Range),
    Long(Range),
    Bool,
    /// A double within an inclusive range.
    Double(f64, f64),
    /// One of these exact strings (Kafka's `ValidString`, case-sensitive).
    OneOf(&'static [&'static str]),
    /// A comma-separated list of these strings (Kafka's `ValidList`).
    ListOf(&'static [&'static str]),
    /// Any string.
    Str,
}

impl Kind {
    /// Checks a value, returning Kafka's reason when it is refused.
    pub(crate) fn check(self, value: &str) -> Result<(), String> {
        match self {
            Kind::Int(range) => parse_int(value, range).map(drop),
            Kind::Long(range) => parse_long(value, range).map(drop),
            Kind::Bool => parse_bool(value).map(drop),
            Kind::Double(min, max) => parse_double(value, min, max).map(drop),
            Kind::OneOf(allowed) => parse_one_of(value, allowed).map(drop),
            Kind::ListOf(allowed) => parse_list_of(value, allowed).map(drop),
            Kind::Str => Ok(()),
        }
    }
}

pub(crate) fn parse_int(value: &str, range: Range) -> Result<i32, String> {
    let n: i32 = value
        .trim()
        .parse()
        .map_err(|_| "Not a number of type INT".to_owned())?;
    range.check(i64::from(n))?;
    Ok(n)
}

pub(crate) fn parse_long(value: &str, range: Range) -> Result<i64, String> {
    let n: i64 = value
        .trim()
        .parse()
        .map_err(|_| "Not a number of type LONG".to_owned())?;
    range.check(n)?;
    Ok(n)
}

pub(crate) fn parse_bool(value: &str) -> Result<bool, String> {
    let trimmed = value.trim();
    if trimmed.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if trimmed.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err("Expected value to be either true or false".to_owned())
    }
}

pub(crate) fn parse_double(value: &str, min: f64, max: f64) -> Result<f64, String> {
    let n: f64 = value
        .trim()
        .parse()
        .map_err(|_| "Not a number of type DOUBLE".to_owned())?;
    if n.is_nan() || n < min {
        return Err(format!("Value must be at least {min}"));
    }
    if n > max {
        return Err(format!("Value must be no more than {max}"));
    }
    Ok(n)
}

pub(crate) fn parse_one_of<'a>(value: &str, allowed: &[&'a str]) -> Result<&'a str, String> {
    let trimmed = value.trim();
    allowed
        .iter()
        .find(|candidate| **candidate == trimmed)
        .copied()
        .ok_or_else(|| format!("String must be one of: {}", allowed.join(", ")))
}

pub(crate) fn parse_list_of<'a>(value: &str, allowed: &[&'a str]) -> Result<Vec<&'a str>, String> {
    let items = split_list(value);
    if items.is_empty() {
        return Err(format!(
            "Empty list; expected one or more of: {}",
            allowed.join(", ")
        ));
    }
    items
        .iter()
        .map(|item| {
            allowed
                .iter()
                .find(|candidate| *candidate == item)
                .copied()
                .ok_or_else(|| {
                    format!(
                        "Invalid value {item}: must be one of: {}",
                        allowed.join(", ")
                    )
                })
        })
        .collect()
}

/// Kafka's list syntax: comma-separated, items trimmed, empty items dropped.
pub(crate) fn split_list(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect()
}

/// Reads typed values out of a [`Properties`], turning every failure into a
/// [`ConfigError`] that names the key, the value and where it was written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub(crate) props: &'a Properties,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(props: &'a Properties) -> Reader<'a> {
        Reader { props }
    }

    pub(crate) fn raw(&self, key: &str) -> Option<&'a str> {
        self.props.get(key)
    }

    /// The error for `key`'s current value.
    pub(crate) fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.to_owned(),
            value: self.raw(key).unwrap_or_default().to_owned(),
            at: self.props.location(key).map(Box::new),
            reason: reason.into(),
        }
    }

    pub(crate) fn missing(&self, key: &str) -> ConfigError {
        ConfigError::Missing {
            key: key.to_owned(),
            source_name: Some(self.props.source_name().to_owned()),
        }
    }

    fn typed<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some(value) => parse(value)
                .map(Some)
                .map_err(|reason| self.invalid(key, reason)),
        }
    }

    pub(crate) fn opt_int(&self, key: &str, range: Range) -> Result<Option<i32>, ConfigError> {
        self.typed(key, |v| parse_int(v, range))
    }

    pub(crate) fn int(&self, key: &str, default: i32, range: Range) -> Result<i32, ConfigError> {
        Ok(self.opt_int(key, range)?.unwrap_or(default))
    }

    pub(crate) fn opt_long(&self, key: &str, range: Range) -> Result<Option<i64>, ConfigError> {
        self.typed(key, |v| parse_long(v, range))
    }

    pub(crate) fn long(&self, key: &str, default: i64, range: Range) -> Result<i64, ConfigError> {
        Ok(self.opt_long(key, range)?.unwrap_or(default))
    }

    /// A non-negative INT read as `u32`; `range` must not admit negatives.
    pub(crate) fn uint(&self, key: &str, default: u32, range: Range) -> Result<u32, ConfigError> {
        match self.opt_int(key, range)? {
            None => Ok(default),
            Some(n) => u32::try_from(n).map_err(|_| self.invalid(key, "Value must be at least 0")),
        }
    }

    /// A non-negative LONG read as `u64`; `range` must not admit negatives.
    pub(crate) fn ulong(&self, key: &str, default: u64, range: Range) -> Result<u64, ConfigError> {
        match self.opt_long(key, range)? {
            None => Ok(default),
            Some(n) => u64::try_from(n).map_err(|_| self.invalid(key, "Value must be at least 0")),
        }
    }

    pub(crate) fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self.typed(key, parse_bool)?.unwrap_or(default))
    }

    pub(crate) fn port(&self, key: &str, default: u16) -> Result<u16, ConfigError> {
        Ok(self.opt_port(key)?.unwrap_or(default))
    }

    pub(crate) fn opt_port(&self, key: &str) -> Result<Option<u16>, ConfigError> {
        self.typed(key, |v| {
            parse_int(v, Range::between(0, i64::from(u16::MAX))).map(|port| port as u16)
        })
    }

    /// A string value, trimmed as Kafka trims every typed value.
    pub(crate) fn string(&self, key: &str) -> Option<String> {
        self.raw(key).map(|v| v.trim().to_owned())
    }

    /// A string value that must not be blank when given.
    pub(crate) fn non_blank(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.string(key) {
            Some(v) if v.is_empty() => Err(self.invalid(key, "must not be empty")),
            other => Ok(other),
        }
    }

    /// Checks a key the program accepts but does not act on.
    pub(crate) fn check(&self, key: &str, kind: Kind) -> Result<(), ConfigError> {
        self.typed(key, |v| kind.check(v)).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_java_numbers_and_trimmed() {
        assert_eq!(parse_int(" 42 ", Range::ANY), Ok(42));
        assert_eq!(parse_int("+7", Range::ANY), Ok(7));
        assert_eq!(parse_int("-7", Range::ANY), Ok(-7));
        assert_eq!(
            parse_int("2147483648", Range::ANY),
            Err("Not a number of type INT".into())
        );
        assert_eq!(
            parse_int("0x10", Range::ANY),
            Err("Not a number of type INT".into())
        );
        assert_eq!(
            parse_int("", Range::ANY),
            Err("Not a number of type INT".into())
        );
        assert_eq!(parse_long("2147483648", Range::ANY), Ok(2_147_483_648));
        assert_eq!(
            parse_long("1.5", Range::ANY),
            Err("Not a number of type LONG".into())
        );
    }

    #[test]
    fn ranges_use_kafkas_wording() {
        assert_eq!(
            parse_int("0", Range::at_least(1)),
            Err("Value must be at least 1".into())
        );
        assert_eq!(
            parse_int("70000", Range::between(0, 65535)),
            Err("Value must be no more than 65535".into())
        );
        assert_eq!(
            parse_double("1.5", 0.0, 1.0),
            Err("Value must be no more than 1".into())
        );
        assert_eq!(
            parse_double("NaN", 0.0, 1.0),
            Err("Value must be at least 0".into())
        );
        assert_eq!(
            parse_double("x", 0.0, 1.0),
            Err("Not a number of type DOUBLE".into())
        );
        assert_eq!(parse_double("0.5", 0.0, 1.0), Ok(0.5));
    }

    #[test]
    fn booleans_ignore_case() {
        assert_eq!(parse_bool("TRUE"), Ok(true));
        assert_eq!(parse_bool(" false "), Ok(false));
        assert_eq!(
            parse_bool("yes"),
            Err("Expected value to be either true or false".into())
        );
    }

    #[test]
    fn enumerations_and_lists() {
        assert_eq!(parse_one_of("gzip", &["gzip", "lz4"]), Ok("gzip"));
        assert_eq!(
            parse_one_of("GZIP", &["gzip", "lz4"]),
            Err("String must be one of: gzip, lz4".into())
        );
        assert_eq!(
            parse_list_of("compact, delete", &["compact", "delete"]),
            Ok(vec!["compact", "delete"])
        );
        assert_eq!(
            parse_list_of("delete,forever", &["compact", "delete"]),
            Err("Invalid value forever: must be one of: compact, delete".into())
        );
        assert!(parse_list_of(" , ", &["compact", "delete"]).is_err());
    }
}
