//! Histories of KV register operations: the event model, the JSON-lines
//! format that `lincheck` reads and the simulator writes, and the pairing of
//! events into operations.
//!
//! A history is a sequence of events, one JSON object per line:
//!
//! ```text
//! {"process":3,"type":"invoke","f":"write","key":"k","value":"5","time":12345}
//! {"process":3,"type":"ok","f":"write","key":"k","time":12400}
//! ```
//!
//! Each operation is an `invoke` followed, later in the file and from the
//! same process, by exactly one completion: `ok` (it took effect, and for a
//! read the ok carries the value read), `fail` (it definitely did not take
//! effect) or `info` (outcome unknown, e.g. a timeout: it may take effect at
//! any time after its invoke, even much later, or never). An invoke left
//! without a completion at the end of the history counts as `info`.
//!
//! Pairing is by file order per process; real-time order between operations
//! comes from the `time` fields only, so a file merged from several clients'
//! logs need not be sorted by time. The book (`book/src/simulation.md`) is
//! the reference for the format; the parser's error messages name the line.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, Write};

/// What an event says about its operation: the `type` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }

    fn parse(text: &str) -> Option<EventType> {
        Some(match text {
            "invoke" => EventType::Invoke,
            "ok" => EventType::Ok,
            "fail" => EventType::Fail,
            "info" => EventType::Info,
            _ => return None,
        })
    }
}

/// The operation kind: the `f` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Function {
    /// Reads the key; the `ok` carries the value read (`null`: key absent).
    Read,
    /// Sets the key to `value`.
    Write,
    /// Sets the key to `value` if it holds `expected` (`null`: if absent).
    /// `ok` means it swapped, `fail` that it did not.
    Cas,
    /// Removes the key.
    Delete,
}

impl Function {
    pub fn as_str(self) -> &'static str {
        match self {
            Function::Read => "read",
            Function::Write => "write",
            Function::Cas => "cas",
            Function::Delete => "delete",
        }
    }

    fn parse(text: &str) -> Option<Function> {
        Some(match text {
            "read" => Function::Read,
            "write" => Function::Write,
            "cas" => Function::Cas,
            "delete" => Function::Delete,
            _ => return None,
        })
    }
}

/// One line of a history.
///
/// `value` and `expected` use `None` for JSON `null`, which means "key
/// absent" (a read that found nothing, a CAS that expects no key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub process: u64,
    pub event_type: EventType,
    pub f: Function,
    pub key: String,
    /// write, cas: the value written (on the invoke); read: the value read
    /// (on the ok). Unused otherwise.
    pub value: Option<String>,
    /// cas: the value it expects (on the invoke). Unused otherwise.
    pub expected: Option<String>,
    /// Any clock common to all processes, in any unit (the simulator uses
    /// virtual nanoseconds).
    pub time: u64,
}

impl Event {
    pub fn invoke_read(process: u64, key: &str, time: u64) -> Event {
        Event::new(process, EventType::Invoke, Function::Read, key, time)
    }

    pub fn invoke_write(process: u64, key: &str, value: &str, time: u64) -> Event {
        Event {
            value: Some(value.to_owned()),
            ..Event::new(process, EventType::Invoke, Function::Write, key, time)
        }
    }

    pub fn invoke_cas(
        process: u64,
        key: &str,
        expected: Option<&str>,
        value: &str,
        time: u64,
    ) -> Event {
        Event {
            value: Some(value.to_owned()),
            expected: expected.map(str::to_owned),
            ..Event::new(process, EventType::Invoke, Function::Cas, key, time)
        }
    }

    pub fn invoke_delete(process: u64, key: &str, time: u64) -> Event {
        Event::new(process, EventType::Invoke, Function::Delete, key, time)
    }

    /// The `ok` of a read that returned `value` (`None`: key absent).
    pub fn ok_read(process: u64, key: &str, value: Option<&str>, time: u64) -> Event {
        Event {
            value: value.map(str::to_owned),
            ..Event::new(process, EventType::Ok, Function::Read, key, time)
        }
    }

    /// A completion without a payload: `ok` of a write, cas or delete, or
    /// any `fail` or `info`.
    pub fn complete(
        process: u64,
        event_type: EventType,
        f: Function,
        key: &str,
        time: u64,
    ) -> Event {
        Event::new(process, event_type, f, key, time)
    }

    fn new(process: u64, event_type: EventType, f: Function, key: &str, time: u64) -> Event {
        Event {
            process,
            event_type,
            f,
            key: key.to_owned(),
            value: None,
            expected: None,
            time,
        }
    }

    /// The event as one JSON line (without the newline), fields in the
    /// documented order and only those its type and function use, so it
    /// parses back to an equal event.
    pub fn to_json_line(&self) -> String {
        let mut line = format!(
            r#"{{"process":{},"type":"{}","f":"{}","key":{}"#,
            self.process,
            self.event_type.as_str(),
            self.f.as_str(),
            json_string(Some(&self.key))
        );
        let carries_value = matches!(
            (self.event_type, self.f),
            (EventType::Invoke, Function::Write | Function::Cas) | (EventType::Ok, Function::Read)
        );
        if carries_value {
            line.push_str(r#","value":"#);
            line.push_str(&json_string(self.value.as_deref()));
        }
        if self.event_type == EventType::Invoke && self.f == Function::Cas {
            line.push_str(r#","expected":"#);
            line.push_str(&json_string(self.expected.as_deref()));
        }
        line.push_str(&format!(r#","time":{}}}"#, self.time));
        line
    }
}

/// A JSON string literal, or `null`.
fn json_string(text: Option<&str>) -> String {
    text.map_or_else(|| "null".to_owned(), |text| Value::from(text).to_string())
}

/// Writes events as JSON lines, the format `lincheck` and
/// [`parse_jsonl`] read.
pub fn write_jsonl(events: &[Event], mut out: impl Write) -> io::Result<()> {
    for event in events {
        writeln!(out, "{}", event.to_json_line())?;
    }
    Ok(())
}

/// Why a history file or event sequence was refused. `line` is 1-based (for
/// in-memory events, the event's position + 1, which is its line once
/// written with [`write_jsonl`]).
#[derive(Debug)]
pub enum HistoryError {
    Io(io::Error),
    Malformed { line: usize, reason: String },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::Io(error) => write!(f, "cannot read history: {error}"),
            HistoryError::Malformed { line, reason } => write!(f, "line {line}: {reason}"),
        }
    }
}

impl std::error::Error for HistoryError {}

fn malformed(line: usize, reason: impl Into<String>) -> HistoryError {
    HistoryError::Malformed {
        line,
        reason: reason.into(),
    }
}

/// Parses one line (without its newline) into an event.
pub fn parse_event(text: &str, line: usize) -> Result<Event, HistoryError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|error| malformed(line, format!("not valid JSON: {error}")))?;
    let Value::Object(object) = value else {
        return Err(malformed(line, "expected a JSON object"));
    };
    let process = required_u64(&object, "process", line)?;
    let time = required_u64(&object, "time", line)?;
    let type_text = required_str(&object, "type", line)?;
    let event_type = EventType::parse(type_text).ok_or_else(|| {
        malformed(
            line,
            format!("unknown type {type_text:?} (expected invoke, ok, fail or info)"),
        )
    })?;
    let f_text = required_str(&object, "f", line)?;
    let f = Function::parse(f_text).ok_or_else(|| {
        malformed(
            line,
            format!("unknown f {f_text:?} (expected read, write, cas or delete)"),
        )
    })?;
    let key = required_str(&object, "key", line)?.to_owned();
    let value = optional_str(&object, "value", line)?;
    let expected = optional_str(&object, "expected", line)?;
    let needs = |field: &str| -> Result<(), HistoryError> {
        match object.get(field) {
            Some(_) => Ok(()),
            None => Err(malformed(
                line,
                format!(
                    "{} {} needs a \"{field}\" field",
                    f.as_str(),
                    event_type.as_str()
                ),
            )),
        }
    };
    match (event_type, f) {
        (EventType::Invoke, Function::Write) | (EventType::Invoke, Function::Cas) => {
            needs("value")?;
            if value.is_none() {
                return Err(malformed(
                    line,
                    format!("{} invoke needs a string \"value\", not null", f.as_str()),
                ));
            }
            if f == Function::Cas {
                needs("expected")?;
            }
        }
        (EventType::Ok, Function::Read) => needs("value")?,
        _ => {}
    }
    Ok(Event {
        process,
        event_type,
        f,
        key,
        value: value.flatten(),
        expected: expected.flatten(),
        time,
    })
}

fn required_u64(
    object: &Map<String, Value>,
    field: &str,
    line: usize,
) -> Result<u64, HistoryError> {
    match object.get(field) {
        None => Err(malformed(line, format!("missing field \"{field}\""))),
        Some(value) => value.as_u64().ok_or_else(|| {
            malformed(
                line,
                format!("\"{field}\" must be a non-negative integer, got {value}"),
            )
        }),
    }
}

fn required_str<'a>(
    object: &'a Map<String, Value>,
    field: &str,
    line: usize,
) -> Result<&'a str, HistoryError> {
    match object.get(field) {
        None => Err(malformed(line, format!("missing field \"{field}\""))),
        Some(value) => value
            .as_str()
            .ok_or_else(|| malformed(line, format!("\"{field}\" must be a string, got {value}"))),
    }
}

/// `None`: field missing; `Some(None)`: `null`; `Some(Some(s))`: a string.
fn optional_str(
    object: &Map<String, Value>,
    field: &str,
    line: usize,
) -> Result<Option<Option<String>>, HistoryError> {
    match object.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(text)) => Ok(Some(Some(text.clone()))),
        Some(other) => Err(malformed(
            line,
            format!("\"{field}\" must be a string or null, got {other}"),
        )),
    }
}

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Read,
    Write {
        value: String,
    },
    Cas {
        expected: Option<String>,
        value: String,
    },
    Delete,
}

impl Call {
    pub fn function(&self) -> Function {
        match self {
            Call::Read => Function::Read,
            Call::Write { .. } => Function::Write,
            Call::Cas { .. } => Function::Cas,
            Call::Delete => Function::Delete,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect. `read` is the value a read returned (`None`: absent);
    /// always `None` for other functions.
    Ok { read: Option<String> },
    /// It definitely did not take effect (for a CAS: it did not swap).
    Fail,
    /// Unknown: an `info`, or an invoke never completed.
    Unknown,
}

/// One invoke paired with its completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub process: u64,
    pub key: String,
    pub call: Call,
    pub outcome: Outcome,
    pub invoke_time: u64,
    /// `None` for an unknown outcome: it may take effect at any later time.
    pub complete_time: Option<u64>,
    /// Line of the invoke (1-based), to point at it in messages.
    pub line: usize,
}

/// A history paired into operations, in invoke order of the input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub operations: Vec<Operation>,
}

impl History {
    /// Pairs in-memory events, with the same checks as [`parse_jsonl`].
    pub fn from_events(events: &[Event]) -> Result<History, HistoryError> {
        let mut pairing = Pairing::default();
        for (index, event) in events.iter().enumerate() {
            pairing.push(event, index + 1)?;
        }
        Ok(pairing.finish())
    }

    /// Number of distinct keys.
    pub fn key_count(&self) -> usize {
        let mut keys: Vec<&str> = self.operations.iter().map(|op| op.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.len()
    }
}

/// Reads a JSON-lines history. Blank lines are skipped (but counted, so
/// line numbers stay those of the file).
pub fn parse_jsonl(reader: impl BufRead) -> Result<History, HistoryError> {
    let mut pairing = Pairing::default();
    for (index, text) in reader.lines().enumerate() {
        let text = text.map_err(HistoryError::Io)?;
        if text.trim().is_empty() {
            continue;
        }
        let line = index + 1;
        let event = parse_event(&text, line)?;
        pairing.push(&event, line)?;
    }
    Ok(pairing.finish())
}

/// Matches completions to the pending invoke of their process.
#[derive(Default)]
struct Pairing {
    /// Process -> index in `operations` of its pending invoke.
    pending: BTreeMap<u64, usize>,
    operations: Vec<Operation>,
}

impl Pairing {
    fn push(&mut self, event: &Event, line: usize) -> Result<(), HistoryError> {
        if event.event_type == EventType::Invoke {
            return self.invoke(event, line);
        }
        let Some(index) = self.pending.remove(&event.process) else {
            return Err(malformed(
                line,
                format!(
                    "{} from process {} without a pending invoke",
                    event.event_type.as_str(),
                    event.process
                ),
            ));
        };
        let op = &mut self.operations[index];
        if event.f != op.call.function() || event.key != op.key {
            return Err(malformed(
                line,
                format!(
                    "{} {} {:?} does not match process {}'s pending {} {:?} (line {})",
                    event.event_type.as_str(),
                    event.f.as_str(),
                    event.key,
                    event.process,
                    op.call.function().as_str(),
                    op.key,
                    op.line
                ),
            ));
        }
        if event.time < op.invoke_time {
            return Err(malformed(
                line,
                format!(
                    "completes at time {} before its invoke at time {} (line {})",
                    event.time, op.invoke_time, op.line
                ),
            ));
        }
        (op.outcome, op.complete_time) = match event.event_type {
            EventType::Ok => {
                let read = match op.call {
                    Call::Read => event.value.clone(),
                    _ => None,
                };
                (Outcome::Ok { read }, Some(event.time))
            }
            EventType::Fail => (Outcome::Fail, Some(event.time)),
            EventType::Info | EventType::Invoke => (Outcome::Unknown, None),
        };
        Ok(())
    }

    fn invoke(&mut self, event: &Event, line: usize) -> Result<(), HistoryError> {
        if let Some(&index) = self.pending.get(&event.process) {
            return Err(malformed(
                line,
                format!(
                    "invoke from process {} while its invoke on line {} is pending",
                    event.process, self.operations[index].line
                ),
            ));
        }
        let call = match event.f {
            Function::Read => Call::Read,
            Function::Delete => Call::Delete,
            Function::Write | Function::Cas => {
                let Some(value) = event.value.clone() else {
                    return Err(malformed(
                        line,
                        format!("{} invoke without a value", event.f.as_str()),
                    ));
                };
                if event.f == Function::Write {
                    Call::Write { value }
                } else {
                    Call::Cas {
                        expected: event.expected.clone(),
                        value,
                    }
                }
            }
        };
        self.pending.insert(event.process, self.operations.len());
        self.operations.push(Operation {
            process: event.process,
            key: event.key.clone(),
            call,
            outcome: Outcome::Unknown,
            invoke_time: event.time,
            complete_time: None,
            line,
        });
        Ok(())
    }

    /// Invokes still pending are left with an unknown outcome.
    fn finish(self) -> History {
        History {
            operations: self.operations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<History, HistoryError> {
        parse_jsonl(text.as_bytes())
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn pairs_invokes_with_completions_per_process() {
        let history = parse(concat!(
            r#"{"process":1,"type":"invoke","f":"write","key":"k","value":"5","time":10}"#,
            "\n",
            r#"{"process":2,"type":"invoke","f":"read","key":"k","time":11}"#,
            "\n\n",
            r#"{"process":2,"type":"ok","f":"read","key":"k","value":null,"time":12}"#,
            "\n",
            r#"{"process":1,"type":"info","f":"write","key":"k","time":20}"#,
            "\n",
            r#"{"process":3,"type":"invoke","f":"cas","key":"k","expected":null,"value":"6","time":21}"#,
            "\n",
        ))
        .unwrap();
        let ops = &history.operations;
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].call, Call::Write { value: "5".into() });
        assert_eq!(ops[0].outcome, Outcome::Unknown);
        assert_eq!(ops[0].complete_time, None);
        assert_eq!(ops[1].outcome, Outcome::Ok { read: None });
        assert_eq!(ops[1].complete_time, Some(12));
        assert_eq!(ops[1].line, 2);
        assert_eq!(
            ops[2].call,
            Call::Cas {
                expected: None,
                value: "6".into()
            }
        );
        // Never completed: unknown.
        assert_eq!(ops[2].outcome, Outcome::Unknown);
        assert_eq!(history.key_count(), 1);
    }

    #[test]
    fn written_events_parse_back_to_the_same_events() {
        let events = vec![
            Event::invoke_write(1, "a", "x", 1),
            Event::invoke_cas(2, "a", None, "y", 2),
            Event::invoke_read(3, "b", 3),
            Event::complete(1, EventType::Ok, Function::Write, "a", 4),
            Event::complete(2, EventType::Fail, Function::Cas, "a", 5),
            Event::ok_read(3, "b", None, 6),
            Event::invoke_delete(1, "b", 7),
            Event::complete(1, EventType::Info, Function::Delete, "b", 8),
            Event::invoke_read(3, "a", 9),
            Event::ok_read(3, "a", Some("x"), 10),
        ];
        let mut bytes = Vec::new();
        write_jsonl(&events, &mut bytes).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let reparsed: Vec<Event> = text
            .lines()
            .enumerate()
            .map(|(index, line)| parse_event(line, index + 1).unwrap())
            .collect();
        assert_eq!(reparsed, events);
        assert_eq!(
            parse(&text).unwrap(),
            History::from_events(&events).unwrap()
        );
        assert!(text.starts_with(
            r#"{"process":1,"type":"invoke","f":"write","key":"a","value":"x","time":1}"#
        ));
    }

    #[test]
    fn malformed_lines_are_refused_with_their_line_number() {
        let invoke = r#"{"process":1,"type":"invoke","f":"read","key":"k","time":1}"#;
        let cases = [
            ("{not json", "line 1: not valid JSON"),
            ("[1,2]", "line 1: expected a JSON object"),
            (
                r#"{"process":1,"type":"begin","f":"read","key":"k","time":1}"#,
                "line 1: unknown type \"begin\"",
            ),
            (
                r#"{"process":1,"type":"invoke","f":"append","key":"k","time":1}"#,
                "line 1: unknown f \"append\"",
            ),
            (
                r#"{"type":"invoke","f":"read","key":"k","time":1}"#,
                "line 1: missing field \"process\"",
            ),
            (
                r#"{"process":-1,"type":"invoke","f":"read","key":"k","time":1}"#,
                "\"process\" must be a non-negative integer",
            ),
            (
                r#"{"process":1,"type":"invoke","f":"read","key":5,"time":1}"#,
                "\"key\" must be a string",
            ),
            (
                r#"{"process":1,"type":"invoke","f":"write","key":"k","time":1}"#,
                "write invoke needs a \"value\" field",
            ),
            (
                r#"{"process":1,"type":"invoke","f":"write","key":"k","value":5,"time":1}"#,
                "\"value\" must be a string or null",
            ),
            (
                r#"{"process":1,"type":"invoke","f":"cas","key":"k","value":"5","time":1}"#,
                "cas invoke needs a \"expected\" field",
            ),
            (
                r#"{"process":1,"type":"ok","f":"read","key":"k","value":null,"time":1}"#,
                "line 1: ok from process 1 without a pending invoke",
            ),
        ];
        for (text, expected) in cases {
            let error = error_of(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
        let two_invokes = format!("{invoke}\n{invoke}\n");
        assert!(error_of(&two_invokes)
            .contains("line 2: invoke from process 1 while its invoke on line 1 is pending"));
        let read_ok_without_value = format!(
            "{invoke}\n{}\n",
            r#"{"process":1,"type":"ok","f":"read","key":"k","time":2}"#
        );
        assert!(error_of(&read_ok_without_value).contains("line 2: read ok needs a \"value\""));
        let other_key = format!(
            "{invoke}\n{}\n",
            r#"{"process":1,"type":"ok","f":"read","key":"j","value":null,"time":2}"#
        );
        assert!(error_of(&other_key).contains("line 2: ok read \"j\" does not match"));
        let backwards = format!(
            "{invoke}\n{}\n",
            r#"{"process":1,"type":"ok","f":"read","key":"k","value":null,"time":0}"#
        );
        assert!(error_of(&backwards).contains("line 2: completes at time 0 before its invoke"));
    }
}
