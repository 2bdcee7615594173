//! The lines a Kafka process logs about its properties at start-up, as
//! Kafka 0.8's `VerifiableProperties` did: every key given, in sorted order,
//! `Property <key> is overridden to <value>` (even when the value equals the
//! default), and `Property <key> is not valid` for keys the program does not
//! know. Tools use it too, with their own set of known keys.

use std::fmt;

use crate::error::{ConfigWarning, Location};
use crate::properties::Properties;

/// One start-up line about the properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyLine {
    /// A known key and its value, logged at INFO.
    Overridden { key: String, value: String },
    /// A warning (unknown key, unsupported setting), logged at WARN.
    Warning(ConfigWarning),
}

impl PropertyLine {
    /// Whether the line is logged at WARN rather than INFO.
    pub fn is_warning(&self) -> bool {
        matches!(self, PropertyLine::Warning(_))
    }
}

impl fmt::Display for PropertyLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyLine::Overridden { key, value } => {
                write!(f, "Property {key} is overridden to {value}")
            }
            PropertyLine::Warning(warning) => write!(f, "{warning}"),
        }
    }
}

/// An [`ConfigWarning::UnknownKey`] for every key of `props` that
/// `is_known` refuses, in file order.
pub fn unknown_key_warnings(
    props: &Properties,
    is_known: impl Fn(&str) -> bool,
) -> Vec<ConfigWarning> {
    props
        .keys()
        .filter(|key| !is_known(key))
        .map(|key| ConfigWarning::UnknownKey {
            key: key.to_owned(),
            at: props.location(key).unwrap_or_else(|| Location {
                source_name: props.source_name().to_owned(),
                line: None,
                origin: None,
            }),
        })
        .collect()
}

/// The start-up lines for a loaded config: every key of `props` sorted,
/// each either `is overridden to` or, when `warnings` names it as unknown,
/// `is not valid`; then the warnings that are not about unknown keys.
pub fn property_lines(props: &Properties, warnings: &[ConfigWarning]) -> Vec<PropertyLine> {
    let mut keys: Vec<&str> = props.keys().collect();
    keys.sort_unstable();
    let mut lines: Vec<PropertyLine> = keys
        .into_iter()
        .map(|key| {
            let unknown = warnings
                .iter()
                .find(|w| matches!(w, ConfigWarning::UnknownKey { key: k, .. } if k == key));
            match unknown {
                Some(warning) => PropertyLine::Warning(warning.clone()),
                None => PropertyLine::Overridden {
                    key: key.to_owned(),
                    value: props.get(key).unwrap_or_default().to_owned(),
                },
            }
        })
        .collect();
    lines.extend(
        warnings
            .iter()
            .filter(|w| !matches!(w, ConfigWarning::UnknownKey { .. }))
            .cloned()
            .map(PropertyLine::Warning),
    );
    lines
}

/// Logs `Verifying properties` and then [`property_lines`], at INFO and
/// WARN, through `tracing`.
pub fn log_properties(props: &Properties, warnings: &[ConfigWarning]) {
    tracing::info!("Verifying properties");
    for line in property_lines(props, warnings) {
        if line.is_warning() {
            tracing::warn!("{line}");
        } else {
            tracing::info!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_sorted_and_unknown_keys_warned_in_place() {
        let props = Properties::parse("port=9092\ntopic=test\nbroker.id=0\n", "f").unwrap();
        let warnings = unknown_key_warnings(&props, |key| key != "topic");
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].to_string(), "Property topic is not valid");
        let mut all = warnings.clone();
        all.push(ConfigWarning::Ignored {
            key: "server.1".into(),
            message: "only standalone mode is supported yet".into(),
        });
        let lines: Vec<String> = property_lines(&props, &all)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            vec![
                "Property broker.id is overridden to 0",
                "Property port is overridden to 9092",
                "Property topic is not valid",
                "Property server.1 is ignored: only standalone mode is supported yet",
            ]
        );
        let warned: Vec<bool> = property_lines(&props, &all)
            .iter()
            .map(PropertyLine::is_warning)
            .collect();
        assert_eq!(warned, vec![false, false, true, true]);
    }

    #[test]
    fn unknown_key_warnings_carry_their_line() {
        let props = Properties::parse("a=1\n\nzzz=2\n", "cfg").unwrap();
        let warnings = unknown_key_warnings(&props, |key| key == "a");
        match &warnings[..] {
            [ConfigWarning::UnknownKey { key, at }] => {
                assert_eq!(key, "zzz");
                assert_eq!(at.to_string(), "cfg (line 3)");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
