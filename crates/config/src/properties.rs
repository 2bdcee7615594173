//! Java `.properties` text, read the way `java.util.Properties.load` reads it.
//!
//! Owns the syntax only (lines, continuations, separators, escapes); what a
//! key means is for the typed configs. Never interprets or trims values
//! beyond what Java does, so a file behaves here exactly as it did for Kafka.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{ConfigError, Location};

/// Where one entry's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// Read from the text; the 1-based line its logical line starts on.
    Line(usize),
    /// Set in code, optionally saying by whom (`--producer-property`).
    Set(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    value: String,
    origin: Origin,
}

/// An ordered set of string properties with the place each was defined.
///
/// Iteration follows the text: a key appears where it was first defined; a
/// later definition of the same key replaces its value (and its line), as in
/// Java, where the last one wins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    source_name: String,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl Properties {
    /// An empty set; `source_name` is what messages call it.
    pub fn new(source_name: impl Into<String>) -> Properties {
        Properties {
            source_name: source_name.into(),
            entries: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Reads and parses a file. The source name in messages is the path as
    /// given. Text that is not UTF-8 is read as ISO-8859-1, the encoding Java
    /// assumes for `.properties` byte streams, so old files keep working.
    pub fn load(path: impl AsRef<Path>) -> Result<Properties, ConfigError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(not_utf8) => not_utf8
                .into_bytes()
                .iter()
                .map(|&b| char::from(b))
                .collect(),
        };
        Properties::parse(&text, path.display().to_string())
    }

    /// Parses `.properties` text. The only syntax error Java knows is a
    /// malformed `\uXXXX` escape; everything else is some key and value.
    pub fn parse(text: &str, source_name: impl Into<String>) -> Result<Properties, ConfigError> {
        let mut properties = Properties::new(source_name);
        // A byte-order mark is not part of the first key (Java would keep it,
        // which only ever produces a confusing unknown key).
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines = natural_lines(text);
        let mut next = 0;
        while next < lines.len() {
            let first_line_number = next + 1;
            let first = strip_leading_whitespace(lines[next]);
            next += 1;
            if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
                continue;
            }
            let mut logical = first.to_owned();
            while ends_in_continuation(&logical) {
                logical.pop();
                match lines.get(next) {
                    Some(line) => {
                        logical.push_str(strip_leading_whitespace(line));
                        next += 1;
                    }
                    // A backslash on the last line continues into nothing.
                    None => break,
                }
            }
            let (raw_key, raw_value) = split_key_value(&logical);
            let unescape_here = |raw: &str| {
                unescape(raw).map_err(|message| ConfigError::Syntax {
                    source_name: properties.source_name.clone(),
                    line: first_line_number,
                    message,
                })
            };
            let key = unescape_here(raw_key)?;
            let value = unescape_here(raw_value)?;
            properties.insert(key, value, Origin::Line(first_line_number));
        }
        Ok(properties)
    }

    /// What messages call this set: the file's path, or the name given.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The value of `key`, if defined.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.index.get(key).map(|&i| self.entries[i].value.as_str())
    }

    /// Whether `key` is defined.
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The 1-based line on which `key`'s value was defined; `None` if the key
    /// is absent or was set in code.
    pub fn line(&self, key: &str) -> Option<usize> {
        match self.index.get(key).map(|&i| &self.entries[i].origin) {
            Some(Origin::Line(line)) => Some(*line),
            _ => None,
        }
    }

    /// Where `key`'s value came from, for messages; `None` if it is absent.
    pub fn location(&self, key: &str) -> Option<Location> {
        let entry = &self.entries[*self.index.get(key)?];
        let (line, origin) = match &entry.origin {
            Origin::Line(line) => (Some(*line), None),
            Origin::Set(origin) => (None, origin.clone()),
        };
        Some(Location {
            source_name: self.source_name.clone(),
            line,
            origin,
        })
    }

    /// Sets (or overrides) a value, as Java's `setProperty` does; messages
    /// about it say it was overridden.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.insert(key.into(), value.into(), Origin::Set(None));
    }

    /// Sets (or overrides) a value, naming who set it for messages (for
    /// example `--producer-property`).
    pub fn set_from(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        origin: impl Into<String>,
    ) {
        self.insert(key.into(), value.into(), Origin::Set(Some(origin.into())));
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let position = self.index.remove(key)?;
        let entry = self.entries.remove(position);
        for slot in self.index.values_mut() {
            if *slot > position {
                *slot -= 1;
            }
        }
        Some(entry.value)
    }

    /// Every key and value, in the order the keys were first defined.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|entry| (entry.key.as_str(), entry.value.as_str()))
    }

    /// Every key, in the order they were first defined.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|entry| entry.key.as_str())
    }

    /// How many distinct keys are defined.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is defined.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, key: String, value: String, origin: Origin) {
        match self.index.get(&key) {
            Some(&i) => {
                let entry = &mut self.entries[i];
                entry.value = value;
                entry.origin = origin;
            }
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push(Entry { key, value, origin });
            }
        }
    }
}

impl<'a> IntoIterator for &'a Properties {
    type Item = (&'a str, &'a str);
    type IntoIter = Box<dyn Iterator<Item = (&'a str, &'a str)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Java's whitespace inside `.properties` lines: space, tab and form feed
/// (not other Unicode spaces).
fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

fn strip_leading_whitespace(line: &str) -> &str {
    line.trim_start_matches(is_whitespace)
}

/// Splits on `\n`, `\r` and `\r\n`, as Java's line reader does.
fn natural_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&text[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&text[start..i]);
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < bytes.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// A line continues when it ends in an odd number of backslashes (an even
/// number is escaped backslashes).
fn ends_in_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// Splits a logical line into its raw (still escaped) key and value: the key
/// ends at the first unescaped `=`, `:` or whitespace; then whitespace and at
/// most one `=` or `:` are skipped.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut key_end = line.len();
    let mut value_start = line.len();
    let mut has_separator = false;
    let mut preceding_backslash = false;
    for (i, c) in line.char_indices() {
        if !preceding_backslash {
            if c == '=' || c == ':' {
                key_end = i;
                value_start = i + 1;
                has_separator = true;
                break;
            }
            if is_whitespace(c) {
                key_end = i;
                value_start = i + 1;
                break;
            }
        }
        preceding_backslash = c == '\\' && !preceding_backslash;
    }
    let rest = &line[value_start..];
    let mut skipped = rest.len();
    for (i, c) in rest.char_indices() {
        if is_whitespace(c) {
            continue;
        }
        if !has_separator && (c == '=' || c == ':') {
            has_separator = true;
            continue;
        }
        skipped = i;
        break;
    }
    (&line[..key_end], &rest[skipped..])
}

/// Resolves Java's escapes: `\t \n \r \f`, `\uXXXX` (with surrogate pairs),
/// and a backslash before any other character stands for that character.
fn unescape(raw: &str) -> Result<String, String> {
    if !raw.contains('\\') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    let mut pending_high_surrogate: Option<u16> = None;
    while let Some(c) = chars.next() {
        if c != '\\' {
            if pending_high_surrogate.take().is_some() {
                return Err(unpaired_surrogate());
            }
            out.push(c);
            continue;
        }
        let Some(escaped) = chars.next() else {
            // Only reachable for a key ending in an escaped separator's
            // backslash, which the splitter never produces; keep it literal.
            out.push('\\');
            break;
        };
        if escaped != 'u' {
            if pending_high_surrogate.take().is_some() {
                return Err(unpaired_surrogate());
            }
            out.push(match escaped {
                't' => '\t',
                'n' => '\n',
                'r' => '\r',
                'f' => '\x0c',
                other => other,
            });
            continue;
        }
        let mut unit: u16 = 0;
        for _ in 0..4 {
            let digit = chars
                .next()
                .and_then(|h| h.to_digit(16))
                .ok_or_else(|| "Malformed \\uxxxx encoding".to_owned())?;
            unit = (unit << 4) | digit as u16;
        }
        match (pending_high_surrogate.take(), unit) {
            (None, 0xD800..=0xDBFF) => pending_high_surrogate = Some(unit),
            (None, 0xDC00..=0xDFFF) => return Err(unpaired_surrogate()),
            (None, _) => out.push(char::from_u32(u32::from(unit)).ok_or_else(unpaired_surrogate)?),
            (Some(high), 0xDC00..=0xDFFF) => {
                let decoded = char::decode_utf16([high, unit])
                    .next()
                    .and_then(Result::ok)
                    .ok_or_else(unpaired_surrogate)?;
                out.push(decoded);
            }
            (Some(_), _) => return Err(unpaired_surrogate()),
        }
    }
    if pending_high_surrogate.is_some() {
        return Err(unpaired_surrogate());
    }
    Ok(out)
}

fn unpaired_surrogate() -> String {
    "Unpaired UTF-16 surrogate in \\uxxxx escape".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Properties {
        Properties::parse(text, "test.properties").unwrap()
    }

    fn pairs(props: &Properties) -> Vec<(String, String)> {
        props
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn the_three_separators_and_whitespace_around_them() {
        let p = parse("a=1\nb: 2\nc 3\n  d  =  4\ne\t:\t5\nf\x0c6\ng = = 7\nh=:8\ni :=9\n");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("2"));
        assert_eq!(p.get("c"), Some("3"));
        assert_eq!(p.get("d"), Some("4"));
        assert_eq!(p.get("e"), Some("5"));
        assert_eq!(p.get("f"), Some("6"));
        // Only one separator is skipped; the second is part of the value.
        assert_eq!(p.get("g"), Some("= 7"));
        assert_eq!(p.get("h"), Some(":8"));
        assert_eq!(p.get("i"), Some("=9"));
    }

    #[test]
    fn trailing_whitespace_of_a_value_is_kept() {
        let p = parse("a=1  \nb = two words \t\n");
        assert_eq!(p.get("a"), Some("1  "));
        assert_eq!(p.get("b"), Some("two words \t"));
    }

    #[test]
    fn keys_without_values_and_empty_values() {
        let p = parse("lonely\nempty=\nspaced   \ncolon:\n");
        assert_eq!(p.get("lonely"), Some(""));
        assert_eq!(p.get("empty"), Some(""));
        assert_eq!(p.get("spaced"), Some(""));
        assert_eq!(p.get("colon"), Some(""));
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let p = parse(
            "# a comment\n! another\n   # indented comment\n\n   \n\t\nkey=value # not a comment\n",
        );
        assert_eq!(
            pairs(&p),
            vec![("key".into(), "value # not a comment".into())]
        );
    }

    #[test]
    fn a_comment_ending_in_a_backslash_does_not_continue() {
        let p = parse("# comment \\\nkey=value\n");
        assert_eq!(pairs(&p), vec![("key".into(), "value".into())]);
    }

    #[test]
    fn continuation_lines_join_without_their_leading_whitespace() {
        let p = parse("fruits = apple, banana, \\\n         pear, \\\n\t# not a comment\n");
        assert_eq!(
            p.get("fruits"),
            Some("apple, banana, pear, # not a comment")
        );
    }

    #[test]
    fn continuation_into_a_blank_line_ends_the_value() {
        let p = parse("a=x\\\n   \nb=y\n");
        assert_eq!(p.get("a"), Some("x"));
        assert_eq!(p.get("b"), Some("y"));
    }

    #[test]
    fn even_backslashes_do_not_continue() {
        let p = parse("path=c:\\\\\nnext=1\n");
        assert_eq!(p.get("path"), Some("c:\\"));
        assert_eq!(p.get("next"), Some("1"));
        let p = parse("odd=a\\\\\\\n  b\n");
        assert_eq!(p.get("odd"), Some("a\\b"));
    }

    #[test]
    fn a_backslash_at_the_end_of_the_file_is_dropped() {
        let p = parse("a=value\\");
        assert_eq!(p.get("a"), Some("value"));
    }

    #[test]
    fn continuation_can_split_the_key() {
        let p = parse("long\\\n  key = v\n");
        assert_eq!(p.get("longkey"), Some("v"));
    }

    #[test]
    fn line_terminators_cr_lf_and_crlf() {
        let p = parse("a=1\rb=2\r\nc=3\nd=4\\\r\n  5");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("2"));
        assert_eq!(p.get("c"), Some("3"));
        assert_eq!(p.get("d"), Some("45"));
        assert_eq!(p.line("d"), Some(4));
    }

    #[test]
    fn escapes() {
        let p = parse(
            "tab=a\\tb\nnl=a\\nb\ncr=a\\rb\nff=a\\fb\nbs=a\\\\b\neq=a\\=b\ncolon=a\\:b\nother=\\a\\b\\z\nuni=\\u0041\\u00e9\\u20AC\n",
        );
        assert_eq!(p.get("tab"), Some("a\tb"));
        assert_eq!(p.get("nl"), Some("a\nb"));
        assert_eq!(p.get("cr"), Some("a\rb"));
        assert_eq!(p.get("ff"), Some("a\x0cb"));
        assert_eq!(p.get("bs"), Some("a\\b"));
        assert_eq!(p.get("eq"), Some("a=b"));
        assert_eq!(p.get("colon"), Some("a:b"));
        assert_eq!(p.get("other"), Some("abz"));
        assert_eq!(p.get("uni"), Some("Aé€"));
    }

    #[test]
    fn escaped_separators_and_spaces_belong_to_the_key() {
        let p = parse("a\\=b=c\nx\\:y:z\nwith\\ space = v\n\\#notcomment=1\n");
        assert_eq!(p.get("a=b"), Some("c"));
        assert_eq!(p.get("x:y"), Some("z"));
        assert_eq!(p.get("with space"), Some("v"));
        assert_eq!(p.get("#notcomment"), Some("1"));
    }

    #[test]
    fn surrogate_pairs_combine() {
        let p = parse("smile=\\uD83D\\uDE00\n");
        assert_eq!(p.get("smile"), Some("😀"));
    }

    #[test]
    fn malformed_unicode_escape_is_an_error_with_its_line() {
        for text in ["\n\nbad=\\u12G4\n", "\n\nbad=\\u12", "\n\nb\\uZZZZ=1"] {
            let err = Properties::parse(text, "config/x.properties").unwrap_err();
            assert_eq!(
                err.to_string(),
                "Malformed \\uxxxx encoding in config/x.properties (line 3)"
            );
        }
        let err = Properties::parse("a=\\uD83Dx", "f").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unpaired UTF-16 surrogate in \\uxxxx escape in f (line 1)"
        );
    }

    #[test]
    fn last_duplicate_wins_and_keeps_first_position() {
        let p = parse("a=1\nb=2\na=3\n");
        assert_eq!(
            pairs(&p),
            vec![("a".into(), "3".into()), ("b".into(), "2".into())]
        );
        assert_eq!(p.line("a"), Some(3));
        assert_eq!(p.line("b"), Some(2));
    }

    #[test]
    fn iteration_follows_the_file() {
        let p = parse("z=1\na=2\nm=3\n");
        assert_eq!(p.keys().collect::<Vec<_>>(), vec!["z", "a", "m"]);
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn set_overrides_and_remembers_the_origin() {
        let mut p = parse("a=1\n");
        p.set("a", "2");
        p.set_from("b", "3", "--producer-property");
        assert_eq!(p.get("a"), Some("2"));
        assert_eq!(p.line("a"), None);
        assert_eq!(
            p.location("a").unwrap().to_string(),
            "test.properties (overridden)"
        );
        assert_eq!(p.location("b").unwrap().to_string(), "--producer-property");
        assert_eq!(p.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(p.remove("a"), Some("2".into()));
        assert_eq!(p.get("b"), Some("3"));
        assert_eq!(p.keys().collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn byte_order_mark_is_not_part_of_the_first_key() {
        let p = parse("\u{feff}broker.id=0\n");
        assert_eq!(p.get("broker.id"), Some("0"));
    }

    #[test]
    fn load_reports_the_path_and_os_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.properties");
        let err = Properties::load(&missing).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "Cannot read properties file {}: No such file or directory",
                missing.display()
            )),
            "{message}"
        );
        assert!(!message.contains('\n'));
    }

    #[test]
    fn load_reads_latin1_when_not_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.properties");
        std::fs::write(&path, b"name=caf\xe9\n").unwrap();
        let p = Properties::load(&path).unwrap();
        assert_eq!(p.get("name"), Some("café"));
        assert_eq!(p.source_name(), path.display().to_string());
    }
}
