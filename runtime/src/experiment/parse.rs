//! Reading an experiment file: YAML or JSON, bounded, every error located.
//!
//! ```text
//! text ─► size check ─► census (bounds what YAML aliases expand to) ─► typed parse
//!      ─► semantic checks (every problem, not just the first) ─► locate each problem
//! ```
//!
//! - The format: JSON when the first character that is not white space is `{`, YAML otherwise.
//! - A syntax or type error (unknown field, wrong type, bad duration) stops the parse; it
//!   carries the parser's line and column and the field path from `serde_path_to_error`.
//! - The semantic checks collect every problem (at most [`MAX_ERRORS`]), each with its field
//!   path. Its line and column come from reading the text again with the same parser and
//!   stopping at that path: the position is the parser's own (the field's key, or the start of
//!   a list element), sound for block and flow YAML alike. Re-reading is bounded: at most
//!   [`LOCATE_BYTES`] of text in total, past which problems carry their path only.
//! - Hostile input: the text is at most [`limits::FILE_BYTES`]; both parsers refuse nesting
//!   deeper than 128; the document may hold at most [`limits::VALUES`] values with every
//!   YAML alias counted each time it is used, so an alias bomb is refused before anything is
//!   built from it.
//!
//! - Columns count characters from 1 in both formats (serde_json counts bytes and reports the
//!   end of a token; its positions are moved to the token's start).
//! - A file of only comments, or of several YAML documents, is refused with its own message.
//!
//! Everything here is pure computation on a string: no file or network I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::spec::{Experiment, ProbeMode, ProbeSpec, Select, Span, Step, Targets, limits};
use crate::component::{MAX_REFERENCE_LEN, Source};
use crate::hub::Reference;

/// The most problems one parse reports; past it, one more error says how many were left out.
pub const MAX_ERRORS: usize = 64;

/// The most text re-read, in total, to locate semantic problems (one re-read per problem).
pub const LOCATE_BYTES: usize = 16 << 20;

/// One problem in an experiment file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file, as given.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, in characters, when known.
    pub column: Option<usize>,
    /// The field path (`lanes[0].steps[2].weight`); empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a file (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl std::fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// Parses and checks an experiment file's text; `file` names it in errors.
///
/// Pure computation, but up to a few hundred milliseconds on a file near the size limit: async
/// callers run it through `spawn_blocking`.
pub fn parse(text: &str, file: &str) -> Result<Experiment, SpecErrors> {
    let whole = |message: String| {
        SpecErrors(vec![SpecError {
            file: file.to_string(),
            line: None,
            column: None,
            path: String::new(),
            message,
        }])
    };
    if text.len() > limits::FILE_BYTES {
        return Err(whole(format!(
            "the file is {} bytes, more than the {} an experiment file may be",
            text.len(),
            limits::FILE_BYTES
        )));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(whole("the file is empty".into()));
    }
    let comments_only = text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    });
    if comments_only {
        return Err(whole("the file is empty: it holds only comments".into()));
    }
    let format = if text.trim_start().starts_with('{') {
        Format::Json
    } else {
        Format::Yaml
    };
    let located = |e: Located| SpecErrors(vec![e.into_error(file)]);
    format.census(text).map_err(located)?;
    let experiment = format.typed(text).map_err(located)?;
    let problems = check(&experiment);
    if problems.is_empty() {
        return Ok(experiment);
    }
    let mut errors = Vec::with_capacity(problems.len().min(MAX_ERRORS) + 1);
    let mut reread = 0usize;
    for problem in problems.iter().take(MAX_ERRORS) {
        let position = if reread.saturating_add(text.len()) <= LOCATE_BYTES {
            reread += text.len();
            format.locate(text, &problem.path)
        } else {
            None
        };
        errors.push(SpecError {
            file: file.to_string(),
            line: position.map(|p| p.0),
            column: position.map(|p| p.1),
            path: problem.path.to_string(),
            message: problem.message.clone(),
        });
    }
    if problems.len() > MAX_ERRORS {
        errors.push(SpecError {
            file: file.to_string(),
            line: None,
            column: None,
            path: String::new(),
            message: format!("{} more problems not shown", problems.len() - MAX_ERRORS),
        });
    }
    Err(SpecErrors(errors))
}

/// The experiment file's JSON Schema (draft 2020-12), as published in
/// `docs/experiment.schema.json`.
pub fn schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Experiment).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert("$id".into(), SCHEMA_ID.into());
        object.insert("title".into(), "Faultline experiment".into());
    }
    schema
}

/// Where the published schema says it lives.
pub const SCHEMA_ID: &str = "https://example.invalid/faultline/docs/experiment.schema.json";

// ---------------------------------------------------------------------------------------------
// Field paths.

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(&'static str),
    Index(usize),
}

/// A path into the document, written as `lanes[0].steps[2].weight`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FieldPath(Vec<Seg>);

impl FieldPath {
    fn key(&self, key: &'static str) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(key));
        p
    }

    fn index(&self, i: usize) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The two formats: census, typed parse, location.

#[derive(Debug, Clone, Copy)]
enum Format {
    Json,
    Yaml,
}

/// A parser's error, before it is given the file's name.
struct Located {
    line: Option<usize>,
    column: Option<usize>,
    path: String,
    message: String,
}

impl Located {
    fn into_error(self, file: &str) -> SpecError {
        SpecError {
            file: file.to_string(),
            line: self.line,
            column: self.column,
            path: self.path,
            message: self.message,
        }
    }
}

/// The message a locating re-read stops with; never shown.
const FOUND: &str = "\u{1}faultline: found";
/// The message of a census past its budget.
const TOO_MANY: &str = "\u{1}faultline: too many values";

impl Format {
    /// Counts the document's values, aliases expanded, and refuses past [`limits::VALUES`].
    fn census(self, text: &str) -> Result<(), Located> {
        let mut left = limits::VALUES;
        // The path is tracked too: the YAML library's repetition limit has no position.
        let mut track = serde_path_to_error::Track::new();
        match self {
            Format::Json => {
                let mut de = serde_json::Deserializer::from_str(text);
                let counted = Census(&mut left)
                    .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track));
                counted
                    .map_err(|e| json_error(text, &path_text(&track.path()), &e))
                    .and_then(|()| de.end().map_err(|e| json_error(text, "", &e)))
            }
            Format::Yaml => Census(&mut left)
                .deserialize(serde_path_to_error::Deserializer::new(
                    serde_yaml_ng::Deserializer::from_str(text),
                    &mut track,
                ))
                .map_err(|e| {
                    let mut located = yaml_error(&path_text(&track.path()), &e);
                    if located.message == MORE_THAN_ONE_DOCUMENT {
                        located.message = "the file holds a second YAML document here; an \
                                           experiment is one document"
                            .into();
                        if let Some((line, column)) = second_document(text) {
                            (located.line, located.column) = (Some(line), Some(column));
                        }
                    }
                    located
                }),
        }
    }

    /// The typed parse; errors carry the parser's position and the field path.
    fn typed(self, text: &str) -> Result<Experiment, Located> {
        match self {
            Format::Json => {
                let mut de = serde_json::Deserializer::from_str(text);
                let experiment = serde_path_to_error::deserialize(&mut de)
                    .map_err(|e| json_error(text, &path_text(e.path()), e.inner()))?;
                de.end().map_err(|e| json_error(text, "", &e))?;
                Ok(experiment)
            }
            Format::Yaml => {
                serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text))
                    .map_err(|e| yaml_error(&path_text(e.path()), e.inner()))
            }
        }
    }

    /// Reads the text again and stops at `path`: the parser's position there.
    fn locate(self, text: &str, path: &FieldPath) -> Option<(usize, usize)> {
        let find = Find(&path.0);
        match self {
            Format::Json => {
                let e = find
                    .deserialize(&mut serde_json::Deserializer::from_str(text))
                    .err()?;
                if !e.to_string().contains(FOUND) || e.line() == 0 {
                    return None;
                }
                Some(token_start(text, e.line(), e.column()))
            }
            Format::Yaml => {
                let e = find
                    .deserialize(serde_yaml_ng::Deserializer::from_str(text))
                    .err()?;
                if !e.to_string().contains(FOUND) {
                    return None;
                }
                e.location().map(|l| (l.line(), l.column()))
            }
        }
    }
}

/// The YAML library's words for a file of several documents (its error has no position).
const MORE_THAN_ONE_DOCUMENT: &str =
    "deserializing from YAML containing more than one document is not supported";

/// Where the second document of a YAML stream starts: its first value.
fn second_document(text: &str) -> Option<(usize, usize)> {
    let second = serde_yaml_ng::Deserializer::from_str(text).nth(1)?;
    let e = Find(&[]).deserialize(second).err()?;
    e.location().map(|l| (l.line(), l.column()))
}

/// `serde_path_to_error`'s path, empty for the whole document.
fn path_text(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." { String::new() } else { text }
}

fn friendly(message: &str) -> String {
    if message.contains(TOO_MANY) {
        return format!(
            "the document holds more than {} values (a YAML alias counts each time it is \
             used); an experiment needs far fewer",
            limits::VALUES
        );
    }
    match message {
        "recursion limit exceeded" => "values are nested more than 128 levels deep".into(),
        "repetition limit exceeded" => "YAML aliases are expanded too many times".into(),
        "EOF while parsing a value" => "the file ends where a value was expected".into(),
        _ => message.to_string(),
    }
}

fn yaml_error(path: &str, e: &serde_yaml_ng::Error) -> Located {
    let location = e.location();
    let mut message = e.to_string();
    if let Some(l) = &location {
        message = message.replacen(
            &format!(" at line {} column {}", l.line(), l.column()),
            "",
            1,
        );
    }
    // The YAML library writes its own path (the field's, or its parent's) before the message.
    let mut prefix = path;
    loop {
        if let Some(rest) = message
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(": "))
            .filter(|_| !prefix.is_empty())
        {
            message = rest.to_string();
            break;
        }
        match prefix.rfind(['.', '[']) {
            Some(cut) => prefix = &prefix[..cut],
            None => break,
        }
    }
    Located {
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        path: path.to_string(),
        message: friendly(&message),
    }
}

fn json_error(text: &str, path: &str, e: &serde_json::Error) -> Located {
    let mut message = e.to_string();
    let (mut line, mut column) = (None, None);
    if e.line() > 0 {
        message = message.replacen(
            &format!(" at line {} column {}", e.line(), e.column()),
            "",
            1,
        );
        // A type error is found after its token; point at the token's start.
        let (l, c) = if e.is_data() {
            token_start(text, e.line(), e.column())
        } else {
            (e.line(), char_column(text, e.line(), e.column()))
        };
        line = Some(l);
        column = Some(c);
    }
    let mut message = friendly(&message);
    if e.is_syntax() && !message.contains("nested more than") {
        message.push_str(" (a file whose first character is `{` is read as JSON)");
    }
    Located {
        line,
        column,
        path: if path == "?" {
            String::new()
        } else {
            path.into()
        },
        message,
    }
}

/// serde_json counts columns in bytes; the YAML parser, and these errors, in characters.
fn char_column(text: &str, line: usize, column: usize) -> usize {
    match text.split('\n').nth(line.saturating_sub(1)) {
        Some(line_text) => {
            let bytes = line_text.as_bytes();
            let before = column.saturating_sub(1);
            let inside = before.min(bytes.len());
            let chars = bytes[..inside]
                .iter()
                .filter(|&&b| b & 0xc0 != 0x80)
                .count();
            chars + (before - inside) + 1
        }
        None => column,
    }
}

/// serde_json reports the last byte it read (1-based line, column in bytes): when that ends a
/// string, number or literal, the start of that token instead, with the column counted in
/// characters as the YAML parser counts it.
fn token_start(text: &str, line: usize, column: usize) -> (usize, usize) {
    let Some(bytes) = text
        .split('\n')
        .nth(line.saturating_sub(1))
        .map(str::as_bytes)
    else {
        return (line, column);
    };
    let Some(end) = column.checked_sub(1).filter(|&i| i < bytes.len()) else {
        return (line, char_column(text, line, column));
    };
    let word = |b: u8| b.is_ascii_alphanumeric() || b"+-.".contains(&b);
    let mut start = end;
    if bytes[end] == b'"' {
        // The opening quote is the previous quote not escaped by an odd run of backslashes
        // (a JSON string never spans lines).
        let mut i = end;
        while i > 0 {
            i -= 1;
            if bytes[i] == b'"' {
                let backslashes = bytes[..i].iter().rev().take_while(|&&c| c == b'\\').count();
                if backslashes % 2 == 0 {
                    start = i;
                    break;
                }
            }
        }
    } else if word(bytes[end]) {
        while start > 0 && word(bytes[start - 1]) {
            start -= 1;
        }
    }
    // Characters before the token: the bytes that do not continue a UTF-8 sequence.
    let chars = bytes[..start].iter().filter(|&&b| b & 0xc0 != 0x80).count();
    (line, chars + 1)
}

/// Counts every value, each use of an alias in full, and stops past the budget.
struct Census<'a>(&'a mut usize);

impl Census<'_> {
    fn take<E: de::Error>(&mut self) -> Result<(), E> {
        self.take_n(1)
    }

    /// A string costs one value per 64 bytes besides its own: an alias of a long string
    /// repeated many times is charged for the copies the typed parse would make.
    fn take_text<E: de::Error>(&mut self, len: usize) -> Result<(), E> {
        self.take_n(1 + len / 64)
    }

    fn take_n<E: de::Error>(&mut self, n: usize) -> Result<(), E> {
        match self.0.checked_sub(n) {
            Some(left) => {
                *self.0 = left;
                Ok(())
            }
            None => Err(E::custom(TOO_MANY)),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Census<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! census_scalars {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method<E: de::Error>(mut self, _: $ty) -> Result<(), E> {
            self.take()
        })*
    };
}

impl<'de> Visitor<'de> for Census<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    census_scalars!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128,
        visit_u128: u128, visit_f64: f64);

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        self.take_text(v.len())
    }

    fn visit_bytes<E: de::Error>(mut self, v: &[u8]) -> Result<(), E> {
        self.take_text(v.len())
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.take()
    }

    fn visit_none<E: de::Error>(mut self) -> Result<(), E> {
        self.take()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.take()?;
        while seq.next_element_seed(Census(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.take()?;
        while map.next_key_seed(Census(&mut *self.0))?.is_some() {
            map.next_value_seed(Census(&mut *self.0))?;
        }
        Ok(())
    }

    fn visit_enum<A: de::EnumAccess<'de>>(mut self, data: A) -> Result<(), A::Error> {
        // A YAML tag (`!name value`): the tag, then the value.
        self.take()?;
        let (IgnoredAny, variant) = data.variant()?;
        de::VariantAccess::newtype_variant_seed(variant, Census(&mut *self.0))
    }
}

/// Walks to a path and stops there with [`FOUND`], so the parser records its position: at a
/// field's key, or at the start of a list element.
struct Find<'p>(&'p [Seg]);

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Find<'_> {
    // A scalar: the end of the walk if the path is, else the path is not in the document.
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.0.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

macro_rules! find_scalars {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method<E: de::Error>(self, _: $ty) -> Result<(), E> {
            self.scalar()
        })*
    };
}

impl<'de> Visitor<'de> for Find<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    find_scalars!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128,
        visit_u128: u128, visit_f64: f64, visit_str: &str, visit_bytes: &[u8]);

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        match self.0.split_first() {
            None => Err(de::Error::custom(FOUND)),
            Some((Seg::Index(i), rest)) => {
                for _ in 0..*i {
                    if seq.next_element::<IgnoredAny>()?.is_none() {
                        return Ok(());
                    }
                }
                seq.next_element_seed(Find(rest))?;
                Ok(())
            }
            Some((Seg::Key(_), _)) => Ok(()),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.0.split_first() {
            None => Err(de::Error::custom(FOUND)),
            Some((Seg::Key(key), rest)) => {
                while let Some(hit) = map.next_key_seed(Key {
                    key,
                    last: rest.is_empty(),
                })? {
                    if hit {
                        return map.next_value_seed(Find(rest));
                    }
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(())
            }
            Some((Seg::Index(_), _)) => Ok(()),
        }
    }
}

/// A map key: whether it is `key`; when it is and it ends the path, stops with [`FOUND`] while
/// the parser is at the key.
struct Key<'k> {
    key: &'k str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match (v == self.key, self.last) {
            (true, true) => Err(E::custom(FOUND)),
            (hit, _) => Ok(hit),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

// ---------------------------------------------------------------------------------------------
// Semantic checks.

/// One semantic problem, before it is located.
struct Problem {
    path: FieldPath,
    message: String,
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: FieldPath, message: impl Into<String>) {
        self.0.push(Problem {
            path,
            message: message.into(),
        });
    }
}

/// The most bytes of one target criterion (a process name pattern, a cgroup path...).
const CRITERION_BYTES: usize = 1024;

/// Every problem of a well-typed experiment, in document order.
fn check(e: &Experiment) -> Vec<Problem> {
    let mut p = Problems::default();
    let root = FieldPath::default();
    name(&mut p, root.key("name"), &e.name, "the experiment's name");
    for (i, tag) in e.tags.iter().enumerate() {
        name(&mut p, root.key("tags").index(i), tag, "a tag");
    }
    if let Some(team) = &e.team
        && !is_team_name(team)
    {
        p.add(
            root.key("team"),
            format!(
                "{:?} is not a team name (1 to {} of a-z, 0-9 and `-`, such as `payments`)",
                clip_team(team),
                limits::TEAM
            ),
        );
    }
    let mut hubs = HashSet::new();
    for (i, hub) in e.hubs.iter().enumerate() {
        let path = root.key("hubs").index(i);
        if !is_hub_name(hub) {
            p.add(
                path,
                format!(
                    "{hub:?} is not a hub name (1 to 64 of a-z, 0-9, `.`, `_`, `-`, starting \
                     with a letter or digit, such as `bundled`)"
                ),
            );
        } else if !hubs.insert(hub.as_str()) {
            p.add(path, format!("hub {hub:?} is listed twice"));
        }
    }
    if let Some(timeout) = e.timeout {
        positive(
            &mut p,
            root.key("timeout"),
            timeout,
            "the experiment's timeout",
        );
    }

    // Names first, so a probe's `faults` can be checked against every fault step.
    let mut steps: HashMap<String, (usize, usize)> = HashMap::new();
    let mut fault_steps = HashSet::new();
    let mut lanes = HashSet::new();
    if e.lanes.is_empty() {
        p.add(
            root.key("lanes"),
            "an experiment needs at least one lane with one step",
        );
    }
    if e.lanes.len() > limits::LANES {
        p.add(
            root.key("lanes"),
            format!(
                "{} lanes, more than the {} an experiment may have",
                e.lanes.len(),
                limits::LANES
            ),
        );
    }
    for (i, lane) in e.lanes.iter().enumerate() {
        let lane_path = root.key("lanes").index(i);
        if let Some(n) = &lane.name {
            name(&mut p, lane_path.key("name"), n, "a lane's name");
        }
        let lane_name = e.lane_name(i);
        if !lanes.insert(lane_name.clone()) {
            p.add(
                lane_path.clone(),
                format!("a lane is already called {lane_name:?}"),
            );
        }
        if lane.steps.is_empty() {
            p.add(
                lane_path.key("steps"),
                format!("lane {lane_name:?} has no steps"),
            );
        }
        if lane.steps.len() > limits::STEPS {
            p.add(
                lane_path.key("steps"),
                format!(
                    "lane {lane_name:?} has {} steps, more than the {} a lane may have",
                    lane.steps.len(),
                    limits::STEPS
                ),
            );
        }
        for (j, step) in lane.steps.iter().enumerate() {
            let step_path = lane_path.key("steps").index(j);
            let step_name = e.step_name(i, j);
            if let Some(n) = &step.name {
                name(&mut p, step_path.key("name"), n, "a step's name");
            }
            if let Some((li, lj)) = steps.get(&step_name) {
                let how = if step.name.is_some() {
                    ""
                } else {
                    " (its default name)"
                };
                p.add(
                    step_path.clone(),
                    format!(
                        "step {step_name:?}{how} has the name of lanes[{li}].steps[{lj}]; give \
                         each step its own `name`"
                    ),
                );
            } else {
                steps.insert(step_name.clone(), (i, j));
            }
            if step.fault.is_some() {
                fault_steps.insert(step_name.clone());
            }
            check_step(&mut p, &step_path, &step_name, step);
        }
    }

    if e.probes.len() > limits::PROBES {
        p.add(
            root.key("probes"),
            format!(
                "{} probes, more than the {} an experiment may have",
                e.probes.len(),
                limits::PROBES
            ),
        );
    }
    let mut probes = HashSet::new();
    for (k, probe) in e.probes.iter().enumerate() {
        let path = root.key("probes").index(k);
        name(&mut p, path.key("name"), &probe.name, "a probe's name");
        if !probes.insert(probe.name.as_str()) {
            p.add(
                path.key("name"),
                format!("a probe is already called {:?}", probe.name),
            );
        } else if steps.contains_key(&probe.name) {
            p.add(
                path.key("name"),
                format!(
                    "probe {:?} has the name of a step; probes and steps need distinct names",
                    probe.name
                ),
            );
        }
        check_probe(&mut p, &path, probe, &fault_steps);
    }
    p.0
}

/// A name: 1 to [`limits::NAME`] bytes, no control characters.
fn name(p: &mut Problems, path: FieldPath, text: &str, what: &str) {
    if text.is_empty() || text.len() > limits::NAME {
        p.add(
            path,
            format!(
                "{what} must be 1 to {} bytes, not {}",
                limits::NAME,
                text.len()
            ),
        );
    } else if text.chars().any(char::is_control) {
        p.add(path, format!("{what} holds control characters"));
    }
}

/// A team: 1 to [`limits::TEAM`] of `a-z`, `0-9` and `-` (what tokens name their team with).
pub fn is_team_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= limits::TEAM
        && text
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// A team name as quoted in an error: at most a few dozen characters of it.
fn clip_team(text: &str) -> String {
    text.chars().take(limits::TEAM + 1).collect()
}

fn is_hub_name(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
}

fn positive(p: &mut Problems, path: FieldPath, span: Span, what: &str) {
    if span.get().is_zero() {
        p.add(path, format!("{what} must be longer than 0"));
    }
}

/// A component reference: a hub reference or a digest, never a path.
fn reference(p: &mut Problems, path: FieldPath, text: &str, what: &str) {
    if text.is_empty() || text.len() > MAX_REFERENCE_LEN {
        p.add(
            path,
            format!(
                "{what} must be a hub reference of 1 to {MAX_REFERENCE_LEN} bytes, not {}",
                text.len()
            ),
        );
        return;
    }
    if let Err(e) = Source::from_request(text) {
        // The refusal quotes nothing of the text; say what the experiment needs.
        let e = e.replace("`component`", what);
        p.add(path, format!("{e}; an experiment never names a file"));
        return;
    }
    if let Err(e) = text.parse::<Reference>() {
        p.add(path, e.to_string());
    }
}

/// The fields of a step, with what makes each one present.
fn present(step: &Step) -> [(&'static str, bool); 9] {
    [
        ("params", step.params.is_some()),
        ("duration", step.duration.is_some()),
        ("weight", step.weight.is_some()),
        ("targets", step.targets.is_some()),
        ("timeout", step.timeout.is_some()),
        ("attempts", step.attempts.is_some()),
        ("stop_on_failure", step.stop_on_failure.is_some()),
        ("fault", step.fault.is_some()),
        ("probe", step.probe.is_some()),
    ]
}

fn check_step(p: &mut Problems, path: &FieldPath, step_name: &str, step: &Step) {
    let kinds = [
        ("fault", step.fault.is_some()),
        ("wait", step.wait.is_some()),
        ("probe", step.probe.is_some()),
    ];
    let given: Vec<&str> = kinds.iter().filter(|k| k.1).map(|k| k.0).collect();
    let (kind, allowed): (&str, &[&str]) = match given.as_slice() {
        ["fault"] => (
            "a fault step",
            &["fault", "params", "duration", "weight", "targets"],
        ),
        ["wait"] => ("a wait step", &[]),
        ["probe"] => (
            "a probe action",
            &["probe", "params", "timeout", "attempts", "stop_on_failure"],
        ),
        [] => {
            p.add(
                path.clone(),
                format!("step {step_name:?} needs one of `fault`, `wait` or `probe`"),
            );
            return;
        }
        many => {
            p.add(
                path.clone(),
                format!(
                    "step {step_name:?} has {}: a step is exactly one of `fault`, `wait` or \
                     `probe`",
                    many.iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            );
            return;
        }
    };
    for (field, is_present) in present(step) {
        if is_present && !allowed.contains(&field) {
            p.add(
                path.key(field),
                format!("`{field}` does not belong to {kind} (step {step_name:?})"),
            );
        }
    }
    if let Some(fault) = &step.fault {
        reference(p, path.key("fault"), fault, "`fault`");
        match step.duration {
            None => p.add(
                path.clone(),
                format!("fault step {step_name:?} needs a `duration`"),
            ),
            Some(d) => positive(p, path.key("duration"), d, "a fault's duration"),
        }
        if let Some(w) = step.weight.filter(|&w| w > 10) {
            p.add(
                path.key("weight"),
                format!("weight {w} is more than 10 (step {step_name:?})"),
            );
        }
        if let Some(targets) = &step.targets {
            check_targets(p, &path.key("targets"), targets);
        }
    }
    if let Some(probe) = &step.probe {
        reference(p, path.key("probe"), probe, "`probe`");
        if let Some(t) = step.timeout {
            positive(p, path.key("timeout"), t, "a probe's timeout");
        }
        if let Some(a) = step.attempts {
            attempts(p, path.key("attempts"), a);
        }
    }
}

fn attempts(p: &mut Problems, path: FieldPath, attempts: u32) {
    if !(1..=limits::ATTEMPTS).contains(&attempts) {
        p.add(
            path,
            format!("attempts must be 1 to {}, not {attempts}", limits::ATTEMPTS),
        );
    }
}

fn check_targets(p: &mut Problems, path: &FieldPath, t: &Targets) {
    let lists: [(&'static str, usize); 4] = [
        ("pids", t.pids.len()),
        ("names", t.names.len()),
        ("cmdlines", t.cmdlines.len()),
        ("interfaces", t.interfaces.len()),
    ];
    for (field, len) in lists {
        // The same bound the resolver applies: one constant, so the file and the run agree.
        if len > super::target::MAX_CRITERIA {
            p.add(
                path.key(field),
                format!(
                    "{len} entries, more than the {} a target list may hold",
                    super::target::MAX_CRITERIA
                ),
            );
        }
    }
    for (i, pid) in t.pids.iter().enumerate() {
        if *pid == 0 {
            p.add(path.key("pids").index(i), "pid 0 is not a process");
        }
    }
    for (i, n) in t.names.iter().enumerate() {
        if n.is_empty() || n.len() > 15 || n.chars().any(char::is_control) {
            p.add(
                path.key("names").index(i),
                format!(
                    "{n:?} can never match: a process name (`/proc/<pid>/comm`) is 1 to 15 \
                     bytes"
                ),
            );
        }
    }
    for (i, c) in t.cmdlines.iter().enumerate() {
        let path = path.key("cmdlines").index(i);
        if c.len() > CRITERION_BYTES {
            p.add(
                path,
                format!(
                    "a pattern is at most {CRITERION_BYTES} bytes, not {}",
                    c.len()
                ),
            );
        } else if let Err(e) = regex::RegexBuilder::new(c).size_limit(1 << 20).build() {
            p.add(path, format!("not a regular expression: {e}"));
        }
    }
    if let Some(cgroup) = &t.cgroup {
        let bad = cgroup.is_empty()
            || cgroup.len() > CRITERION_BYTES
            || cgroup.chars().any(char::is_control)
            || cgroup.split('/').any(|c| c == "..");
        if bad {
            p.add(
                path.key("cgroup"),
                format!(
                    "{cgroup:?} is not a cgroup path (1 to {CRITERION_BYTES} bytes under the \
                     cgroup root, no `..`)"
                ),
            );
        }
    }
    if let Some(netns) = &t.netns
        && !is_plain_name(netns, 64)
    {
        p.add(
            path.key("netns"),
            format!("{netns:?} is not the name of a network namespace under /run/netns"),
        );
    }
    for (i, iface) in t.interfaces.iter().enumerate() {
        if !is_plain_name(iface, 15) {
            p.add(
                path.key("interfaces").index(i),
                format!("{iface:?} is not an interface name (1 to 15 bytes, no `/`)"),
            );
        }
    }
    match t.select {
        Some(Select::Count(0)) => {
            p.add(path.key("select").key("count"), "count must be at least 1")
        }
        Some(Select::Percent(pc)) if !(pc > 0.0 && pc <= 100.0) => p.add(
            path.key("select").key("percent"),
            format!("percent must be more than 0 and at most 100, not {pc}"),
        ),
        _ => {}
    }
    let processes = !t.pids.is_empty() || !t.names.is_empty() || !t.cmdlines.is_empty();
    if t.select.is_some() && !processes {
        p.add(
            path.key("select"),
            "`select` picks among processes: give `pids`, `names` or `cmdlines`",
        );
    }
}

/// One file name: no `/`, not `.` or `..`, no white space or control characters.
fn is_plain_name(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text != "."
        && text != ".."
        && !text.contains('/')
        && !text.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn check_probe(p: &mut Problems, path: &FieldPath, probe: &ProbeSpec, faults: &HashSet<String>) {
    reference(p, path.key("probe"), &probe.probe, "`probe`");
    let periodic = matches!(probe.mode, ProbeMode::Continuous | ProbeMode::OnChaos);
    if let Some(t) = probe.timeout {
        positive(p, path.key("timeout"), t, "a probe's timeout");
    }
    if let Some(a) = probe.attempts {
        attempts(p, path.key("attempts"), a);
    }
    if let Some(interval) = probe.interval {
        if interval.get() < limits::MIN_INTERVAL {
            p.add(
                path.key("interval"),
                format!(
                    "interval {} is shorter than the {} a probe may wait",
                    humantime::format_duration(interval.get()),
                    humantime::format_duration(limits::MIN_INTERVAL)
                ),
            );
        } else if !periodic && probe.attempts.unwrap_or(1) <= 1 {
            p.add(
                path.key("interval"),
                format!(
                    "`interval` has no effect on a {} probe with one attempt: it is the time \
                     between checks of continuous and on-chaos probes, and between attempts",
                    probe.mode.as_str()
                ),
            );
        }
    }
    if let Some(rate) = probe.success_rate {
        if !periodic {
            p.add(
                path.key("success_rate"),
                format!(
                    "`success_rate` is for continuous and on-chaos probes, not {}",
                    probe.mode.as_str()
                ),
            );
        } else if !(rate > 0.0 && rate <= 100.0) {
            p.add(
                path.key("success_rate"),
                format!("success_rate must be more than 0 and at most 100, not {rate}"),
            );
        }
    }
    if let Some(list) = &probe.faults {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, step) in list.iter().enumerate() {
            let item = path.key("faults").index(i);
            if let Some(first) = seen.insert(step, i) {
                p.add(
                    item,
                    format!("{step:?} is already listed at faults[{first}]"),
                );
            } else if !faults.contains(step) {
                p.add(item, format!("{step:?} is not the name of a fault step"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_written_as_in_serde_path_to_error() {
        let p = FieldPath::default()
            .key("lanes")
            .index(0)
            .key("steps")
            .index(2)
            .key("weight");
        assert_eq!(p.to_string(), "lanes[0].steps[2].weight");
    }

    #[test]
    fn json_positions_move_to_the_start_of_the_token() {
        let text = "{\"a\": 1,\n  \"b\\\"c\": 300}";
        assert_eq!(token_start(text, 2, 8), (2, 3));
        assert_eq!(token_start(text, 2, 13), (2, 11));
        assert_eq!(token_start(text, 9, 1), (9, 1));
        // `é` is two bytes and one character.
        assert_eq!(token_start("{\"é\": 300}", 1, 10), (1, 7));
        assert_eq!(char_column("{\"é\": 300}", 1, 11), 10);
        assert_eq!(char_column("{\"é\"", 1, 7), 6);
    }

    #[test]
    fn the_schema_accepts_the_module_example_and_refuses_what_the_types_refuse() {
        let validator = jsonschema::draft202012::new(&schema()).unwrap();
        let example = "apiVersion: faultline/v1\nkind: Experiment\nname: n\nlanes:\n  - steps:\n      - fault: process-pause@^0.1\n        duration: 5s\n        targets: { names: [x], select: { percent: 10 } }\nprobes:\n  - { name: p, probe: http-probe, mode: on-chaos, success_rate: 50 }\n";
        let mut value: serde_json::Value = serde_yaml_ng::from_str(example).unwrap();
        assert!(validator.is_valid(&value));
        parse(example, "e.yaml").unwrap();
        value["lanes"][0]["steps"][0]["weight"] = 11.into();
        assert!(!validator.is_valid(&value));
        value["lanes"][0]["steps"][0]["weight"] = 3.into();
        value["lanes"][0]["steps"][0]["wieght"] = 3.into();
        assert!(!validator.is_valid(&value));
    }

    #[test]
    fn an_experiment_written_as_yaml_reads_back_the_same() {
        let text = "apiVersion: faultline/v1\nkind: Experiment\nname: n\nlanes:\n  - steps:\n      - fault: a\n        duration: 1s\n        targets: { pids: [1], select: { count: 2 } }\n      - fault: b\n        duration: 1m 30s\n        targets: { pids: [1], select: { percent: 12.5 } }\n      - fault: c\n        duration: 1s\n        targets: { pids: [1], select: all }\n";
        let experiment = parse(text, "e.yaml").unwrap();
        let written = serde_yaml_ng::to_string(&experiment).unwrap();
        assert_eq!(parse(&written, "w.yaml").unwrap(), experiment, "{written}");
    }

    #[test]
    fn hub_names() {
        assert!(is_hub_name("bundled"));
        assert!(is_hub_name("lab-hub.2"));
        assert!(!is_hub_name(""));
        assert!(!is_hub_name("-x"));
        assert!(!is_hub_name("Lab"));
        assert!(!is_hub_name(&"a".repeat(65)));
    }

    #[test]
    fn a_team_is_checked_and_located() {
        assert!(is_team_name("red"));
        assert!(is_team_name("team-2"));
        assert!(is_team_name(&"a".repeat(64)));
        assert!(!is_team_name(&"a".repeat(65)));
        assert!(!is_team_name(""));
        assert!(!is_team_name("Red"));
        assert!(!is_team_name("a_b"));
        let base = "apiVersion: faultline/v1\nkind: Experiment\nname: n\nteam: TEAM\nlanes:\n  - steps:\n      - wait: 1s\n";
        let ok = parse(&base.replace("TEAM", "payments"), "e.yaml").unwrap();
        assert_eq!(ok.team.as_deref(), Some("payments"));
        let errors = parse(&base.replace("TEAM", "Pay_ments"), "e.yaml").unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        let e = &errors.0[0];
        assert_eq!((e.path.as_str(), e.line), ("team", Some(4)), "{errors}");
        assert!(
            e.message.contains("\"Pay_ments\" is not a team name"),
            "{errors}"
        );
        let validator = jsonschema::draft202012::new(&schema()).unwrap();
        let bad: serde_json::Value =
            serde_yaml_ng::from_str(&base.replace("TEAM", "Pay_ments")).unwrap();
        assert!(!validator.is_valid(&bad));
    }
}
