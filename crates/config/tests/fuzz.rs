//! Fuzz targets for configuration: the `.properties` parser on arbitrary
//! text (escapes, continuations, line ends, any Unicode) and the typed,
//! validated configs on arbitrary values for the keys they read. Nothing
//! panics; what `Properties::store` in Java would write reads back as
//! written; a bad value is one one-line error naming its key.
//!
//! Bounded for CI; `PROPTEST_CASES=100000 cargo nextest run -p config
//! --test fuzz` runs each target longer.

use std::collections::BTreeMap;

use config::{
    BrokerConfig, ConfigError, CoordinatorConfig, Properties, TopicConfig, topic_config_names,
    validate_topic_config,
};
use proptest::prelude::*;

// ------------------------------------------------------------ text

/// Text made mostly of what the syntax gives meaning to, so that escapes,
/// separators, comments and continuations meet in every combination.
fn arb_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => Just("\\".to_owned()),
        2 => Just("\\u".to_owned()),
        2 => Just("\\uD83D".to_owned()),
        1 => Just("\\uDE00".to_owned()),
        3 => prop::sample::select(vec!["=", ":", " ", "\t", "\x0c", "#", "!", "\n", "\r", "\r\n"])
            .prop_map(str::to_owned),
        2 => "[0-9a-fA-FxXuU]{1,4}",
        3 => "[a-z.]{1,8}",
        1 => "\\PC{1,3}",
        1 => any::<char>().prop_map(String::from),
        1 => Just("\u{feff}".to_owned()),
    ];
    prop_oneof![
        proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat()),
        ".{0,200}",
    ]
}

/// Java's `Properties.saveConvert`: how `store` escapes a key (every
/// space) or a value (a leading space only), with non-ASCII characters
/// either left as they are or written as `\uXXXX` UTF-16 units.
fn java_escape(text: &str, is_key: bool, ascii_only: bool) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x0c' => out.push_str("\\f"),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == 0 || is_key => out.push_str("\\ "),
            // A byte-order mark starting the text is dropped on purpose
            // (see `Properties::parse`); escaped, it is a character.
            '\u{feff}' => out.push_str("\\uFEFF"),
            c if ascii_only && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Layout {
    separator: &'static str,
    line_end: &'static str,
    ascii_only: bool,
    /// Where continuation lines break a value, as fractions of its length.
    breaks: Vec<u8>,
    indent: &'static str,
    comment: bool,
}

fn arb_layout() -> impl Strategy<Value = Layout> {
    (
        prop::sample::select(vec!["=", ":", " ", " = ", "\t:\t", "\x0c"]),
        prop::sample::select(vec!["\n", "\r\n", "\r"]),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..3),
        prop::sample::select(vec!["", " ", "\t ", "\x0c"]),
        any::<bool>(),
    )
        .prop_map(
            |(separator, line_end, ascii_only, breaks, indent, comment)| Layout {
                separator,
                line_end,
                ascii_only,
                breaks,
                indent,
                comment,
            },
        )
}

/// One entry as a file would hold it: an optional comment before it, the
/// escaped key and value, and the value broken over continuation lines
/// (each break between two escaped characters, never inside an escape).
fn write_entry(key: &str, value: &str, layout: &Layout) -> String {
    let mut text = String::new();
    if layout.comment {
        // A comment ending in a backslash does not continue.
        text.push_str(&format!("# a comment \\{}", layout.line_end));
    }
    let key = java_escape(key, true, layout.ascii_only);
    let units: Vec<String> = value
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let mut one = [0u8; 4];
            let c = c.encode_utf8(&mut one);
            // Only the first character's space is escaped, as in Java.
            let escaped = java_escape(c, false, layout.ascii_only);
            if i > 0 && c == " " {
                " ".to_owned()
            } else {
                escaped
            }
        })
        .collect();
    let mut breaks: Vec<usize> = layout
        .breaks
        .iter()
        .map(|b| usize::from(*b) * units.len() / 256)
        .collect();
    breaks.sort_unstable();
    text.push_str(layout.indent);
    text.push_str(&key);
    // An empty key before a whitespace separator would make a blank line.
    let separator = if key.is_empty() && layout.separator.trim().is_empty() {
        "="
    } else {
        layout.separator
    };
    text.push_str(separator);
    for (i, unit) in units.iter().enumerate() {
        let mut broken = false;
        for _ in breaks.iter().filter(|&&b| b == i && i > 0) {
            text.push('\\');
            text.push_str(layout.line_end);
            text.push_str(layout.indent);
            broken = true;
        }
        // Leading whitespace of a continuation line is dropped, so a space
        // that starts the rest of the value must be escaped.
        if broken && unit == " " {
            text.push('\\');
        }
        text.push_str(unit);
    }
    text.push_str(layout.line_end);
    text
}

proptest! {
    #![proptest_config(fuzz_support::config(512))]

    #[test]
    fn arbitrary_text_parses_or_is_a_syntax_error(text in arb_text()) {
        let lines = text.split(['\n', '\r']).count().max(1);
        match Properties::parse(&text, "fuzz.properties") {
            Ok(props) => {
                for key in props.keys() {
                    let line = props.line(key).expect("a parsed key has a line");
                    prop_assert!((1..=lines).contains(&line), "line {line} of {lines}");
                }
            }
            Err(err) => {
                prop_assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
                let message = err.to_string();
                prop_assert!(!message.contains('\n'), "{message:?}");
                prop_assert!(message.contains("fuzz.properties"), "{message}");
            }
        }
    }

    #[test]
    fn what_java_would_store_reads_back(
        entries in proptest::collection::btree_map(".{0,12}", ".{0,24}", 0..6),
        layouts in proptest::collection::vec(arb_layout(), 6),
    ) {
        let mut text = String::new();
        for ((key, value), layout) in entries.iter().zip(&layouts) {
            text.push_str(&write_entry(key, value, layout));
        }
        let props = Properties::parse(&text, "stored.properties")
            .map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
        let read: BTreeMap<String, String> = props
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        prop_assert_eq!(read, entries, "text {:?}", text);
    }
}

// ------------------------------------------------------------ typed configs

/// Keys read outside the typed fields that still have a value rule.
const BROKER_ACCEPTED_KEYS: &[&str] = &["background.threads", "unknown.key"];
const COORDINATOR_ACCEPTED_KEYS: &[&str] = &["admin.serverPort", "forceSync", "server.1"];

/// Values at every edge the parsers have: empty, signs, the limits of
/// int and long and just past them, floats, hex, case, padding, lists,
/// addresses, and anything at all.
fn arb_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "-1",
            "0",
            "1",
            "-0",
            "+1",
            "2147483647",
            "2147483648",
            "-2147483648",
            "-2147483649",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "99999999999999999999",
            "1e3",
            "1.5",
            "0x10",
            "true",
            "TRUE",
            "false",
            "yes",
            " 5",
            "5 ",
            "PLAINTEXT://:0",
            "PLAINTEXT://host:99999",
            "PLAINTEXT://[::1]:9092",
            "A://:1,A://:2",
            "X:PLAINTEXT",
            "host:",
            ":",
            ",",
            "a,,b",
            "[::1",
            "localhost:2181/",
            "/tmp/kafka-logs",
            "CreateTime",
            "delete,compact",
            "gzip",
            "none",
            "65535",
            "65536",
            "h:1:2",
            "h:1:2:observer",
        ])
        .prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<i32>().prop_map(|n| n.to_string()),
        "\\PC{0,12}",
        ".{0,12}",
    ]
}

fn arb_settings(
    typed: &'static [&'static str],
    accepted: &'static [&'static str],
) -> impl Strategy<Value = Vec<(String, String)>> {
    let keys: Vec<&'static str> = typed.iter().chain(accepted).copied().collect();
    proptest::collection::vec(
        (
            prop_oneof![
                9 => prop::sample::select(keys).prop_map(str::to_owned),
                1 => "[a-z.]{1,12}",
            ],
            arb_value(),
        ),
        1..6,
    )
}

fn properties(base: &[(&str, &str)], settings: &[(String, String)]) -> Properties {
    let mut props = Properties::new("fuzz.properties");
    for (key, value) in base {
        props.set(*key, *value);
    }
    for (key, value) in settings {
        props.set(key.clone(), value.clone());
    }
    props
}

/// A refused config is one line naming a key that was set (or a required
/// one that was not).
fn check_error(err: &ConfigError, props: &Properties) -> Result<(), TestCaseError> {
    let message = err.to_string();
    prop_assert!(!message.contains('\n'), "{message:?}");
    let key = err.key();
    prop_assert!(key.is_some(), "error names no key: {message}");
    let key = key.unwrap_or_default();
    prop_assert!(message.contains(key), "{message} does not name {key}");
    if !matches!(err, ConfigError::Missing { .. }) {
        prop_assert!(props.contains_key(key), "{message}: {key} was not set");
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_support::config(512))]

    #[test]
    fn broker_config_accepts_or_names_the_bad_key(settings in arb_settings(BrokerConfig::typed_keys(), BROKER_ACCEPTED_KEYS)) {
        let props = properties(
            &[("broker.id", "0"), ("zookeeper.connect", "localhost:2181"),
              ("log.dirs", "/tmp/fuzz-logs")],
            &settings,
        );
        match BrokerConfig::from_properties(&props) {
            Ok(config) => {
                // Derived values must not overflow either.
                let _ = config.topic_defaults();
                let _ = config.inter_broker_endpoint();
            }
            Err(err) => check_error(&err, &props)?,
        }
    }

    #[test]
    fn coordinator_config_accepts_or_names_the_bad_key(
        settings in arb_settings(CoordinatorConfig::typed_keys(), COORDINATOR_ACCEPTED_KEYS),
    ) {
        let props = properties(&[("dataDir", "/tmp/fuzz-zk")], &settings);
        match CoordinatorConfig::from_properties(&props) {
            Ok(config) => {
                let _ = config.bind_address();
            }
            Err(err) => check_error(&err, &props)?,
        }
    }

    #[test]
    fn topic_configs_accept_or_name_the_bad_key(
        overrides in proptest::collection::btree_map(
            prop_oneof![
                9 => prop::sample::select(topic_config_names().collect::<Vec<_>>())
                    .prop_map(str::to_owned),
                1 => "[a-z.]{1,12}",
            ],
            arb_value(),
            1..5,
        ),
    ) {
        let props = properties(&[], &overrides.clone().into_iter().collect::<Vec<_>>());
        let validated: Vec<Result<(), ConfigError>> = overrides
            .iter()
            .map(|(k, v)| validate_topic_config(k, v))
            .collect();
        for err in validated.iter().filter_map(|r| r.as_ref().err()) {
            check_error(err, &props)?;
        }
        match TopicConfig::default().with_overrides(&overrides) {
            Ok(_) => prop_assert!(validated.iter().all(Result::is_ok)),
            Err(err) => {
                check_error(&err, &props)?;
                // Applying refuses exactly what validation refuses.
                prop_assert!(validated.iter().any(Result::is_err), "{err}");
            }
        }
    }
}
