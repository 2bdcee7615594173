//! The one error type of this crate, and the warnings a config can carry.
//!
//! Every message is one line and names what an operator needs to fix it: the
//! key, the value as written, and where it was written.

use std::fmt;
use std::path::PathBuf;

/// Where a property's value came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file (or other source) the properties were read from.
    pub source_name: String,
    /// The 1-based line the key's (winning) value starts on; `None` when the
    /// value was set in code rather than read from the text.
    pub line: Option<usize>,
    /// Who set the value when it was not read from the text (for example
    /// `--producer-property`); `None` for file values and anonymous overrides.
    pub origin: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.line, &self.origin) {
            (Some(line), _) => write!(f, "{} (line {line})", self.source_name),
            (None, Some(origin)) => f.write_str(origin),
            (None, None) => write!(f, "{} (overridden)", self.source_name),
        }
    }
}

/// Renders an optional location as ` in <location>` (or nothing), so that
/// one message shape serves values from files and bare values alike.
struct At<'a>(&'a Option<Box<Location>>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(location) if location.line.is_none() && location.origin.is_some() => {
                write!(f, " from {location}")
            }
            Some(location) => write!(f, " in {location}"),
            None => Ok(()),
        }
    }
}

/// Why a properties file or a config could not be used. Each is fatal for the
/// process that loads it: nothing should start on a config that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("Cannot read properties file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid `.properties` syntax (only a malformed `\uXXXX`
    /// escape can make it so).
    #[error("{message} in {source_name} (line {line})")]
    Syntax {
        source_name: String,
        line: usize,
        message: String,
    },
    /// A value that does not parse, is out of range, or contradicts another key.
    #[error("Invalid value {value} for configuration {key}{}: {reason}", At(at))]
    InvalidValue {
        key: String,
        value: String,
        at: Option<Box<Location>>,
        reason: String,
    },
    /// A key without a default that the program cannot do without.
    #[error(
        "Missing required configuration {key} which has no default value{}",
        InSource(source_name)
    )]
    Missing {
        key: String,
        source_name: Option<String>,
    },
    /// A topic-level config name Kafka does not define.
    #[error("Unknown topic config name: {key}")]
    UnknownTopicConfig { key: String },
}

struct InSource<'a>(&'a Option<String>);

impl fmt::Display for InSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(source_name) => write!(f, " in {source_name}"),
            None => Ok(()),
        }
    }
}

impl ConfigError {
    /// The key the error is about, when it is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::InvalidValue { key, .. }
            | ConfigError::Missing { key, .. }
            | ConfigError::UnknownTopicConfig { key } => Some(key),
            ConfigError::Io { .. } | ConfigError::Syntax { .. } => None,
        }
    }
}

/// Something in a config that does not stop the program but that the
/// operator should hear about at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// A key the program does not know; probably a typo. Shown with Kafka's
    /// wording, `Property <key> is not valid`.
    UnknownKey { key: String, at: Location },
    /// A key the program knows but does not honour here: not supported yet,
    /// or overruled by another key.
    Ignored { key: String, message: String },
}

impl ConfigWarning {
    /// The key the warning is about.
    pub fn key(&self) -> &str {
        match self {
            ConfigWarning::UnknownKey { key, .. } | ConfigWarning::Ignored { key, .. } => key,
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::UnknownKey { key, .. } => write!(f, "Property {key} is not valid"),
            ConfigWarning::Ignored { key, message } => {
                write!(f, "Property {key} is ignored: {message}")
            }
        }
    }
}
