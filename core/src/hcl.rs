//! Consul's HCL config files, turned into the JSON value the same file
//! would hold, so the agent has one set of rules for both formats.
//!
//! ```text
//! text --lex--> tokens --parse--> Node tree (blocks kept apart) --to_json--> serde_json::Value
//! ```
//!
//! The syntax is HCL version 1 as Consul reads it: `key = value` attributes
//! (double-quoted strings with escapes, heredocs `<<EOF`/`<<-EOF`, numbers,
//! `true`/`false`), lists `[a, b,]`, objects `{ k = v }` and blocks
//! `key { ... }` (with or without `=`, optionally labelled:
//! `key "label" { }` is `key { label { } }`), and `#`, `//`, `/* */`
//! comments. A file whose first character is `{` is JSON, as in HCL 1.
//!
//! Repeated keys follow Consul (`agent/config/config.go` decodes HCL 1 into
//! maps where every block is a list of maps, then `lib.PatchSliceOfMaps`
//! collapses those lists): blocks of a list key (`services`, `checks`,
//! `watches`, `service.checks`, ... see [`LIST_KEYS`]) always make a JSON
//! list, even when there is one; any other block makes an object, and
//! repeating it is an error, except that repeated `service` and `check`
//! blocks join the `services` and `checks` lists beside them (Consul panics
//! there; a list is what the user meant). A repeated plain attribute keeps
//! its last value, as HCL 1 does.
//!
//! Bounded: inputs over [`CONFIG_FILE_BYTES_MAX`] and nesting deeper than
//! [`CONFIG_NESTING_MAX`] are refused, so no input can overflow the stack.

use crate::limits::{CONFIG_FILE_BYTES_MAX, CONFIG_NESTING_MAX};
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;
use std::fmt;

/// Keys (dotted paths, lowercase) whose blocks always form a list: the
/// exceptions Consul passes to `PatchSliceOfMaps`.
pub const LIST_KEYS: &[&str] = &[
    "checks",
    "segments",
    "service.checks",
    "services",
    "services.checks",
    "watches",
    "service.connect.proxy.config.upstreams",
    "services.connect.proxy.config.upstreams",
    "service.connect.proxy.upstreams",
    "services.connect.proxy.upstreams",
    "service.proxy.upstreams",
    "services.proxy.upstreams",
    "service.connect.sidecar_service.checks",
    "services.connect.sidecar_service.checks",
    "service.connect.sidecar_service.proxy.upstreams",
    "services.connect.sidecar_service.proxy.upstreams",
];

/// A position in the text, both 1-based; columns count characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Why a text is not HCL, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HclError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for HclError {
    /// `line:column: message`; callers put the file name in front.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.column, self.message)
    }
}

impl std::error::Error for HclError {}

fn error<T>(pos: Pos, message: impl Into<String>) -> Result<T, HclError> {
    Err(HclError {
        pos,
        message: message.into(),
    })
}

/// Parses a Consul HCL config text into the JSON value of the same config.
pub fn parse(text: &str) -> Result<Value, HclError> {
    let start = Pos { line: 1, column: 1 };
    if text.len() > CONFIG_FILE_BYTES_MAX {
        return error(
            start,
            format!(
                "config is {} bytes, over the {CONFIG_FILE_BYTES_MAX} allowed",
                text.len()
            ),
        );
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        return parse_json(text);
    }
    let tokens = lex(text)?;
    let mut parser = Parser { tokens, next: 0 };
    let root = parser.object_items(None, 0)?;
    Ok(Value::Object(to_json(root, "")?))
}

/// HCL 1 reads a text starting with `{` as JSON.
fn parse_json(text: &str) -> Result<Value, HclError> {
    serde_json::from_str(text).map_err(|e| HclError {
        pos: Pos {
            line: e.line().max(1),
            column: e.column().max(1),
        },
        message: strip_position(&e.to_string()),
    })
}

/// serde_json ends its messages with " at line L column C"; the position is
/// already in [`HclError::pos`].
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

// ---------------------------------------------------------------- lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Heredoc(String),
    Number(Number),
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Equals,
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(name) => format!("identifier {name:?}"),
            Tok::Str(_) => "a string".into(),
            Tok::Heredoc(_) => "a heredoc".into(),
            Tok::Number(n) => format!("number {n}"),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Comma => "','".into(),
            Tok::Equals => "'='".into(),
            Tok::Eof => "end of file".into(),
        }
    }
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
    pos: Pos,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.text[self.at..].chars().nth(1)
    }

    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        if c == '\n' {
            self.pos.line += 1;
            self.pos.column = 1;
        } else {
            self.pos.column += 1;
        }
        Some(c)
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn lex(text: &str) -> Result<Vec<(Pos, Tok)>, HclError> {
    let mut cur = Cursor {
        text,
        at: 0,
        pos: Pos { line: 1, column: 1 },
    };
    let mut tokens = Vec::new();
    loop {
        skip_blank(&mut cur)?;
        let pos = cur.pos;
        let Some(c) = cur.peek() else {
            tokens.push((pos, Tok::Eof));
            return Ok(tokens);
        };
        let tok = match c {
            '{' | '}' | '[' | ']' | ',' | '=' => {
                cur.bump();
                match c {
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    ',' => Tok::Comma,
                    _ => Tok::Equals,
                }
            }
            '"' => Tok::Str(string(&mut cur)?),
            '<' if cur.rest().starts_with("<<") => Tok::Heredoc(heredoc(&mut cur)?),
            '-' | '0'..='9' => Tok::Number(number(&mut cur)?),
            c if is_ident_start(c) => {
                let start = cur.at;
                while cur.peek().is_some_and(is_ident_char) {
                    cur.bump();
                }
                Tok::Ident(text[start..cur.at].to_string())
            }
            other => return error(pos, format!("unexpected character {other:?}")),
        };
        tokens.push((pos, tok));
    }
}

/// Skips whitespace and comments.
fn skip_blank(cur: &mut Cursor) -> Result<(), HclError> {
    loop {
        match cur.peek() {
            Some(c) if c.is_whitespace() => {
                cur.bump();
            }
            Some('#') => skip_line(cur),
            Some('/') if cur.peek2() == Some('/') => skip_line(cur),
            Some('/') if cur.peek2() == Some('*') => {
                let pos = cur.pos;
                cur.bump();
                cur.bump();
                loop {
                    if cur.rest().starts_with("*/") {
                        cur.bump();
                        cur.bump();
                        break;
                    }
                    if cur.bump().is_none() {
                        return error(pos, "comment not terminated (missing */)");
                    }
                }
            }
            _ => return Ok(()),
        }
    }
}

fn skip_line(cur: &mut Cursor) {
    while cur.peek().is_some_and(|c| c != '\n') {
        cur.bump();
    }
}

/// A double-quoted string. `${...}` is kept verbatim (quotes inside it do
/// not end the string), as HCL 1 does.
fn string(cur: &mut Cursor) -> Result<String, HclError> {
    let start = cur.pos;
    cur.bump();
    let mut out = String::new();
    let mut interpolation_depth = 0usize;
    loop {
        let pos = cur.pos;
        match cur.bump() {
            None | Some('\n') => {
                return error(
                    start,
                    "string not terminated (strings end on the same line; use a heredoc for more)",
                )
            }
            Some('"') if interpolation_depth == 0 => return Ok(out),
            Some('$') if cur.peek() == Some('{') => {
                cur.bump();
                interpolation_depth += 1;
                out.push_str("${");
            }
            Some('{') if interpolation_depth > 0 => {
                interpolation_depth += 1;
                out.push('{');
            }
            Some('}') if interpolation_depth > 0 => {
                interpolation_depth -= 1;
                out.push('}');
            }
            Some('\\') if interpolation_depth == 0 => out.push(escape(cur, pos)?),
            Some(c) => out.push(c),
        }
    }
}

fn escape(cur: &mut Cursor, pos: Pos) -> Result<char, HclError> {
    let c = match cur.bump() {
        Some('n') => '\n',
        Some('t') => '\t',
        Some('r') => '\r',
        Some('a') => '\u{7}',
        Some('b') => '\u{8}',
        Some('f') => '\u{c}',
        Some('v') => '\u{b}',
        Some('\\') => '\\',
        Some('"') => '"',
        Some('\'') => '\'',
        Some(kind @ ('x' | 'u' | 'U')) => {
            let digits = match kind {
                'x' => 2,
                'u' => 4,
                _ => 8,
            };
            let mut code = 0u32;
            for _ in 0..digits {
                let digit = cur.peek().and_then(|d| d.to_digit(16));
                let Some(digit) = digit else {
                    return error(pos, format!("escape \\{kind} needs {digits} hex digits"));
                };
                cur.bump();
                code = code * 16 + digit;
            }
            match char::from_u32(code) {
                Some(c) if kind != 'x' || c.is_ascii() => c,
                _ => return error(pos, format!("escape \\{kind}{code:x} is not a character")),
            }
        }
        Some(other) => return error(pos, format!("unknown escape \\{other}")),
        None => return error(pos, "string not terminated"),
    };
    Ok(c)
}

/// `<<ANCHOR` (or `<<-ANCHOR`, whose closing line may be indented) up to
/// the line holding only the anchor. The value keeps its final newline;
/// `<<-` removes the closing line's indentation from every line when they
/// all have it (HCL 1's `unindentHeredoc`).
fn heredoc(cur: &mut Cursor) -> Result<String, HclError> {
    let start = cur.pos;
    cur.bump();
    cur.bump();
    let indented = cur.peek() == Some('-');
    if indented {
        cur.bump();
    }
    let anchor_at = cur.at;
    while cur.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
        cur.bump();
    }
    let anchor = cur.text[anchor_at..cur.at].to_string();
    if anchor.is_empty() {
        return error(start, "heredoc needs an anchor name after <<");
    }
    if cur.peek() == Some('\r') {
        cur.bump();
    }
    if cur.bump() != Some('\n') {
        return error(start, "heredoc anchor must end its line");
    }
    let mut lines: Vec<&str> = Vec::new();
    loop {
        if cur.peek().is_none() {
            return error(start, format!("heredoc not terminated (missing {anchor})"));
        }
        let line_at = cur.at;
        skip_line(cur);
        let line = cur.text[line_at..cur.at].trim_end_matches('\r');
        cur.bump();
        let closing = if indented {
            line.trim_start_matches([' ', '\t'])
        } else {
            line
        };
        if closing == anchor {
            let prefix = &line[..line.len() - closing.len()];
            let strip = indented && lines.iter().all(|l| l.starts_with(prefix));
            let mut out = String::new();
            for l in lines {
                out.push_str(if strip { &l[prefix.len()..] } else { l });
                out.push('\n');
            }
            return Ok(out);
        }
        lines.push(line);
    }
}

/// Decimal integers and floats (with exponent), optionally negative,
/// hexadecimal (`0x1F`) and octal (`0755`) integers.
fn number(cur: &mut Cursor) -> Result<Number, HclError> {
    let pos = cur.pos;
    let start = cur.at;
    if cur.peek() == Some('-') {
        cur.bump();
    }
    let negative = cur.at > start;
    if cur.rest().starts_with("0x") || cur.rest().starts_with("0X") {
        cur.bump();
        cur.bump();
        let digits_at = cur.at;
        while cur.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
            cur.bump();
        }
        let digits = &cur.text[digits_at..cur.at];
        end_of_number(cur, pos)?;
        let magnitude = i64::from_str_radix(digits, 16).ok();
        return match magnitude.and_then(|m| if negative { m.checked_neg() } else { Some(m) }) {
            Some(n) => Ok(n.into()),
            None => error(pos, format!("invalid number {}", &cur.text[start..cur.at])),
        };
    }
    let mut float = false;
    let digits = |cur: &mut Cursor| {
        let at = cur.at;
        while cur.peek().is_some_and(|c| c.is_ascii_digit()) {
            cur.bump();
        }
        cur.at > at
    };
    if !digits(cur) {
        return error(pos, "'-' must start a number");
    }
    if cur.peek() == Some('.') && cur.peek2().is_some_and(|c| c.is_ascii_digit()) {
        cur.bump();
        digits(cur);
        float = true;
    }
    if matches!(cur.peek(), Some('e' | 'E')) {
        cur.bump();
        if matches!(cur.peek(), Some('+' | '-')) {
            cur.bump();
        }
        if !digits(cur) {
            return error(pos, "number has an exponent without digits");
        }
        float = true;
    }
    end_of_number(cur, pos)?;
    let text = &cur.text[start..cur.at];
    let magnitude = text.trim_start_matches('-');
    let parsed = if float {
        text.parse::<f64>().ok().and_then(Number::from_f64)
    } else if magnitude.len() > 1 && magnitude.starts_with('0') {
        // A leading 0 means octal, as Go's ParseInt(s, 0, 64) reads it in
        // HCL 1 (`mode = 0700`).
        let Ok(m) = i64::from_str_radix(magnitude, 8) else {
            return error(pos, format!("invalid octal number {text}"));
        };
        Some(Number::from(if negative { -m } else { m }))
    } else {
        text.parse::<i64>().ok().map(Number::from)
    };
    match parsed {
        Some(n) => Ok(n),
        None => error(pos, format!("number {text} is out of range")),
    }
}

/// `10s` is not a number followed by a word: durations need quotes.
fn end_of_number(cur: &Cursor, pos: Pos) -> Result<(), HclError> {
    match cur.peek() {
        Some(c) if is_ident_char(c) => error(
            pos,
            "invalid number (quote values such as durations: \"10s\")",
        ),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------- parser

/// A parsed value; objects keep their items in order, repeats included.
enum Node {
    Scalar(Value),
    List(Vec<Node>),
    Object(Vec<Item>),
}

struct Item {
    key: String,
    pos: Pos,
    value: Node,
}

struct Parser {
    tokens: Vec<(Pos, Tok)>,
    next: usize,
}

impl Parser {
    fn peek(&self) -> &(Pos, Tok) {
        // The lexer always ends the list with `Eof`, which is never consumed.
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> (Pos, Tok) {
        let token = self.peek().clone();
        if token.1 != Tok::Eof {
            self.next += 1;
        }
        token
    }

    fn deeper(pos: Pos, depth: usize) -> Result<usize, HclError> {
        if depth >= CONFIG_NESTING_MAX {
            return error(
                pos,
                format!("nested deeper than {CONFIG_NESTING_MAX} levels"),
            );
        }
        Ok(depth + 1)
    }

    /// Items up to `}` (when `open` is the position of `{`) or the end.
    fn object_items(&mut self, open: Option<Pos>, depth: usize) -> Result<Vec<Item>, HclError> {
        let mut items = Vec::new();
        loop {
            let (pos, tok) = self.bump();
            let key = match tok {
                Tok::Eof => match open {
                    None => return Ok(items),
                    Some(open) => return error(open, "'{' is never closed"),
                },
                Tok::RBrace if open.is_some() => return Ok(items),
                Tok::Ident(key) | Tok::Str(key) => key,
                other => return error(pos, format!("expected a key, found {}", other.describe())),
            };
            let value = self.item_value(&key, depth)?;
            items.push(Item { key, pos, value });
            if self.peek().1 == Tok::Comma {
                self.bump();
            }
        }
    }

    /// What follows a key: `= value`, `{ ... }`, or labels then `{ ... }`.
    fn item_value(&mut self, key: &str, depth: usize) -> Result<Node, HclError> {
        let mut labels = Vec::new();
        let mut depth = depth;
        loop {
            let (pos, tok) = self.bump();
            match tok {
                Tok::Equals if labels.is_empty() => return self.value(depth),
                Tok::LBrace => {
                    let mut node =
                        Node::Object(self.object_items(Some(pos), Self::deeper(pos, depth)?)?);
                    while let Some((label, label_pos)) = labels.pop() {
                        node = Node::Object(vec![Item {
                            key: label,
                            pos: label_pos,
                            value: node,
                        }]);
                    }
                    return Ok(node);
                }
                Tok::Ident(label) | Tok::Str(label) => {
                    depth = Self::deeper(pos, depth)?;
                    labels.push((label, pos));
                }
                other => {
                    let wanted = if labels.is_empty() {
                        "'=' or '{'"
                    } else {
                        "'{'"
                    };
                    return error(
                        pos,
                        format!(
                            "expected {wanted} after key {key:?}, found {}",
                            other.describe()
                        ),
                    );
                }
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, HclError> {
        let (pos, tok) = self.bump();
        Ok(match tok {
            Tok::Str(s) | Tok::Heredoc(s) => Node::Scalar(Value::String(s)),
            Tok::Number(n) => Node::Scalar(Value::Number(n)),
            Tok::Ident(word) if word == "true" => Node::Scalar(Value::Bool(true)),
            Tok::Ident(word) if word == "false" => Node::Scalar(Value::Bool(false)),
            Tok::Ident(word) => {
                return error(
                    pos,
                    format!("unexpected identifier {word:?} (strings need double quotes)"),
                )
            }
            Tok::LBrace => Node::Object(self.object_items(Some(pos), Self::deeper(pos, depth)?)?),
            Tok::LBracket => Node::List(self.list(pos, Self::deeper(pos, depth)?)?),
            other => return error(pos, format!("expected a value, found {}", other.describe())),
        })
    }

    fn list(&mut self, open: Pos, depth: usize) -> Result<Vec<Node>, HclError> {
        let mut items = Vec::new();
        loop {
            match &self.peek().1 {
                Tok::RBracket => {
                    self.bump();
                    return Ok(items);
                }
                Tok::Eof => return error(open, "'[' is never closed"),
                _ => items.push(self.value(depth)?),
            }
            let (pos, tok) = self.bump();
            match tok {
                Tok::Comma => {}
                Tok::RBracket => return Ok(items),
                Tok::Eof => return error(open, "'[' is never closed"),
                other => {
                    return error(
                        pos,
                        format!("expected ',' or ']' in a list, found {}", other.describe()),
                    )
                }
            }
        }
    }
}

// ---------------------------------------------------------------- to JSON

/// What one key of an object collected: a plain value (the last wins) or
/// the objects of its blocks, in order.
enum Slot {
    Plain(Node),
    Blocks(Vec<(Pos, Vec<Item>)>),
}

fn child_path(path: &str, key: &str) -> String {
    let key = key.to_ascii_lowercase();
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

fn is_list_key(path: &str) -> bool {
    LIST_KEYS.contains(&path)
}

fn to_json(items: Vec<Item>, path: &str) -> Result<Map<String, Value>, HclError> {
    let mut order: Vec<(String, Pos, Slot)> = Vec::new();
    let mut index_of: BTreeMap<String, usize> = BTreeMap::new();
    for item in items {
        let index = index_of.get(&item.key).copied();
        if index.is_none() {
            index_of.insert(item.key.clone(), order.len());
        }
        match (item.value, index) {
            (Node::Object(fields), Some(i)) => match &mut order[i].2 {
                Slot::Blocks(blocks) => blocks.push((item.pos, fields)),
                plain => *plain = Slot::Blocks(vec![(item.pos, fields)]),
            },
            (Node::Object(fields), None) => {
                order.push((item.key, item.pos, Slot::Blocks(vec![(item.pos, fields)])))
            }
            (value, Some(i)) => order[i].2 = Slot::Plain(value),
            (value, None) => order.push((item.key, item.pos, Slot::Plain(value))),
        }
    }
    let mut map = Map::new();
    let mut joined: Vec<(&str, Pos, Vec<Value>)> = Vec::new();
    for (key, pos, slot) in order {
        let path = child_path(path, &key);
        let objects = match slot {
            Slot::Plain(Node::List(items)) => {
                let list_of_objects = matches!(items.first(), Some(Node::Object(_)));
                let values = items
                    .into_iter()
                    .map(|node| node_json(node, &path))
                    .collect::<Result<Vec<_>, _>>()?;
                if !list_of_objects || is_list_key(&path) {
                    map.insert(key, Value::Array(values));
                    continue;
                }
                values.into_iter().map(|v| (pos, v)).collect()
            }
            Slot::Plain(node) => {
                map.insert(key, node_json(node, &path)?);
                continue;
            }
            Slot::Blocks(blocks) => blocks
                .into_iter()
                .map(|(pos, fields)| Ok((pos, Value::Object(to_json(fields, &path)?))))
                .collect::<Result<Vec<_>, HclError>>()?,
        };
        collapse(&mut map, &mut joined, key, &path, objects)?;
    }
    for (plural, pos, values) in joined {
        match map
            .entry(plural)
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(list) => list.extend(values),
            _ => {
                return error(
                    pos,
                    format!("repeated blocks join {plural:?}, which is not a list"),
                )
            }
        }
    }
    Ok(map)
}

/// Objects given to one key: a list for list keys, else one object.
/// Repeated `service`/`check` blocks are queued to join their plural list.
fn collapse(
    map: &mut Map<String, Value>,
    joined: &mut Vec<(&'static str, Pos, Vec<Value>)>,
    key: String,
    path: &str,
    mut objects: Vec<(Pos, Value)>,
) -> Result<(), HclError> {
    if is_list_key(path) {
        map.insert(
            key,
            Value::Array(objects.into_iter().map(|(_, v)| v).collect()),
        );
        return Ok(());
    }
    if objects.len() == 1 {
        let (_, value) = objects.remove(0);
        map.insert(key, value);
        return Ok(());
    }
    let plural = match key.as_str() {
        "service" => "services",
        "check" => "checks",
        _ => {
            let pos = objects
                .get(1)
                .map_or(Pos { line: 1, column: 1 }, |(p, _)| *p);
            return error(
                pos,
                format!("{path:?} is given more than once; only lists (services, checks, watches) may repeat"),
            );
        }
    };
    let pos = objects[0].0;
    joined.push((plural, pos, objects.into_iter().map(|(_, v)| v).collect()));
    Ok(())
}

fn node_json(node: Node, path: &str) -> Result<Value, HclError> {
    match node {
        Node::Scalar(v) => Ok(v),
        Node::List(items) => Ok(Value::Array(
            items
                .into_iter()
                .map(|n| node_json(n, path))
                .collect::<Result<_, _>>()?,
        )),
        Node::Object(items) => Ok(Value::Object(to_json(items, path)?)),
    }
}

#[cfg(test)]
#[path = "hcl_tests.rs"]
mod tests;
