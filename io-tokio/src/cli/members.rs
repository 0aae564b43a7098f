//! `tribune members`, matching `consul members`.
//!
//! Consul filters on `-status` with a Go regular expression. No regex crate
//! is available, so [`StatusPattern`] implements the subset that makes sense
//! for status words: literals, `.`, `[...]` classes, `*` `+` `?`, `(...)`
//! groups, `|` alternation, `^`/`$` anchors and `\` escapes. Like Go's
//! `MatchString`, a pattern matches anywhere unless anchored.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use super::flags::FlagSpec;
use super::{columnize, connect, fail, get_json, parse_command, Ui};

const MEMBERS_HELP: &str = r#"
Usage: tribune members [options]

  Outputs the members of a running tribune agent's gossip pool.

Command Options

  -detailed       Provides detailed information about nodes.
  -filter=<expr>  Filter to use with the request.
  -segment=<name> Only members of the given network segment.
  -status=<regex> Only members whose status (alive, leaving, left, failed)
                  matches the regular expression.
  -wan            Show the WAN pool (servers only) instead of the LAN pool.
"#;

const MEMBERS_FLAGS: &[FlagSpec] = &[
    FlagSpec::switch("detailed"),
    FlagSpec::value("filter"),
    FlagSpec::value("segment"),
    FlagSpec::value("status"),
    FlagSpec::switch("wan"),
];

/// Consul's "every segment" sentinel for `-segment`.
const ALL_SEGMENTS: &str = "_all";

/// Exit code when no member matches, as in Consul.
const EXIT_NO_MEMBERS: i32 = 2;

/// A gossip pool member from `/v1/agent/members`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Member {
    name: String,
    addr: String,
    port: u16,
    tags: Option<BTreeMap<String, String>>,
    status: i64,
    protocol_cur: i64,
}

pub(super) fn run(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(args, MEMBERS_FLAGS, MEMBERS_HELP, ui));
    let pattern = match StatusPattern::new(parsed.value("status").unwrap_or(".*")) {
        Ok(pattern) => pattern,
        Err(err) => return fail(ui, &format!("Failed to compile status regexp: {err}")),
    };
    let http = or_exit!(connect(&parsed, ui));
    let segment = parsed.value("segment").unwrap_or(ALL_SEGMENTS).to_string();
    let mut extra = Vec::new();
    if parsed.flag("wan") {
        extra.push(("wan", None));
    }
    if !segment.is_empty() {
        extra.push(("segment", Some(segment.clone())));
    }
    if let Some(filter) = parsed.value("filter").filter(|f| !f.is_empty()) {
        extra.push(("filter", Some(filter.to_string())));
    }
    let members: Vec<Member> =
        match get_json::<Option<Vec<Member>>>(&http, "/v1/agent/members", &extra) {
            Ok(members) => members.flatten().unwrap_or_default(),
            Err(err) => return fail(ui, &format!("Error retrieving members: {err}")),
        };
    let mut members: Vec<Member> = members
        .into_iter()
        .map(|member| with_display_tags(member, &segment))
        .filter(|member| pattern.is_match(status_name(member.status)))
        .collect();
    if members.is_empty() {
        return EXIT_NO_MEMBERS;
    }
    members.sort_by_key(sort_key);
    let rows = if parsed.flag("detailed") {
        detailed_rows(&members)
    } else {
        standard_rows(&members)
    };
    ui.info(&columnize(&rows));
    0
}

fn tag<'m>(member: &'m Member, name: &str) -> &'m str {
    member
        .tags
        .as_ref()
        .and_then(|tags| tags.get(name))
        .map_or("", String::as_str)
}

fn is_server(member: &Member) -> bool {
    tag(member, "role") == "consul"
}

fn is_default_partition(partition: &str) -> bool {
    partition.is_empty() || partition == "default"
}

/// Fills in the partition/segment tags the way Consul does before printing
/// (so `-detailed` shows them too): partition defaults to `default`; in the
/// default partition servers belong to `<all>` segments when listing all,
/// and members without a segment to `<default>`.
fn with_display_tags(mut member: Member, segment_filter: &str) -> Member {
    let server = is_server(&member);
    let tags = member.tags.get_or_insert_with(BTreeMap::new);
    let partition = tags.entry("ap".to_string()).or_default();
    if partition.is_empty() {
        *partition = "default".to_string();
    }
    if is_default_partition(tags.get("ap").map_or("", String::as_str)) {
        let segment = tags.entry("segment".to_string()).or_default();
        if segment_filter == ALL_SEGMENTS && server {
            *segment = "<all>".to_string();
        } else if segment.is_empty() {
            *segment = "<default>".to_string();
        }
    } else {
        tags.insert("segment".to_string(), String::new());
    }
    member
}

/// Serf's member status numbering.
fn status_name(status: i64) -> &'static str {
    match status {
        0 => "none",
        1 => "alive",
        2 => "leaving",
        3 => "left",
        4 => "failed",
        _ => "unknown",
    }
}

/// Servers first, then default-partition members, then by segment,
/// partition and name: Consul's member ordering.
fn sort_key(member: &Member) -> (bool, bool, String, String, String) {
    (
        !is_server(member),
        !is_default_partition(tag(member, "ap")),
        tag(member, "segment").to_string(),
        tag(member, "ap").to_string(),
        member.name.clone(),
    )
}

/// `ip:port` as Go's `net.TCPAddr` prints it (IPv6 bracketed; an
/// unparsable address prints as empty).
fn socket_text(member: &Member) -> String {
    match member.addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", member.port),
        Ok(IpAddr::V4(ip)) => format!("{ip}:{}", member.port),
        Err(_) => format!(":{}", member.port),
    }
}

fn standard_rows(members: &[Member]) -> Vec<Vec<String>> {
    let header = "Node Address Status Type Build Protocol DC Partition Segment";
    let mut rows = vec![header.split(' ').map(str::to_string).collect()];
    for member in members {
        let role = match tag(member, "role") {
            "consul" => "server",
            "node" | "" => "client",
            _ => "unknown",
        };
        let mut row = vec![
            member.name.clone(),
            socket_text(member),
            status_name(member.status).to_string(),
            role.to_string(),
        ];
        if role == "unknown" {
            row.extend(std::iter::repeat_n(String::new(), 5));
            rows.push(row);
            continue;
        }
        let build = match tag(member, "build") {
            "" => "< 0.3",
            build => build.split(':').next().unwrap_or(build),
        };
        let protocol = match tag(member, "vsn") {
            "" => member.protocol_cur.to_string(),
            vsn => vsn.to_string(),
        };
        row.extend([
            build.to_string(),
            protocol,
            tag(member, "dc").to_string(),
            tag(member, "ap").to_string(),
            tag(member, "segment").to_string(),
        ]);
        rows.push(row);
    }
    rows
}

fn detailed_rows(members: &[Member]) -> Vec<Vec<String>> {
    let mut rows = vec![vec![
        "Node".to_string(),
        "Address".to_string(),
        "Status".to_string(),
        "Tags".to_string(),
    ]];
    for member in members {
        let tags = member
            .tags
            .iter()
            .flatten()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",");
        rows.push(vec![
            member.name.clone(),
            socket_text(member),
            status_name(member.status).to_string(),
            tags,
        ]);
    }
    rows
}

/// A compiled `-status` pattern (see the module docs for the syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
struct StatusPattern {
    alternatives: Vec<Vec<Piece>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Literal(char),
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Group(Vec<Vec<Piece>>),
    Start,
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    atom: Atom,
    min: usize,
    max: Option<usize>,
}

impl StatusPattern {
    fn new(pattern: &str) -> Result<StatusPattern, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut position = 0;
        let alternatives = parse_alternatives(&chars, &mut position)?;
        if position < chars.len() {
            return Err(format!("error parsing regexp: unexpected ): `{pattern}`"));
        }
        Ok(StatusPattern { alternatives })
    }

    /// Unanchored search, like Go's `Regexp.MatchString`.
    fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        (0..=chars.len())
            .any(|start| match_alternatives(&self.alternatives, &chars, start, &mut |_| true))
    }
}

fn parse_alternatives(chars: &[char], pos: &mut usize) -> Result<Vec<Vec<Piece>>, String> {
    let mut alternatives = vec![Vec::new()];
    while let Some(&c) = chars.get(*pos) {
        match c {
            ')' => break,
            '|' => {
                *pos += 1;
                alternatives.push(Vec::new());
            }
            _ => {
                let atom = parse_atom(chars, pos)?;
                let (min, max) = parse_repeat(chars, pos);
                if let Some(current) = alternatives.last_mut() {
                    current.push(Piece { atom, min, max });
                }
            }
        }
    }
    Ok(alternatives)
}

fn parse_atom(chars: &[char], pos: &mut usize) -> Result<Atom, String> {
    let c = chars[*pos];
    *pos += 1;
    Ok(match c {
        '.' => Atom::Any,
        '^' => Atom::Start,
        '$' => Atom::End,
        '*' | '+' | '?' => {
            return Err(format!(
                "error parsing regexp: missing argument to repetition operator: `{c}`"
            ))
        }
        '\\' => {
            let escaped = chars
                .get(*pos)
                .copied()
                .ok_or("error parsing regexp: trailing backslash at end of expression")?;
            *pos += 1;
            Atom::Literal(escaped)
        }
        '(' => {
            let inner = parse_alternatives(chars, pos)?;
            if chars.get(*pos) != Some(&')') {
                return Err("error parsing regexp: missing closing )".to_string());
            }
            *pos += 1;
            Atom::Group(inner)
        }
        '[' => parse_class(chars, pos)?,
        literal => Atom::Literal(literal),
    })
}

fn parse_class(chars: &[char], pos: &mut usize) -> Result<Atom, String> {
    let negated = chars.get(*pos) == Some(&'^');
    if negated {
        *pos += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(*pos) else {
            return Err("error parsing regexp: missing closing ]".to_string());
        };
        *pos += 1;
        if c == ']' && !first {
            return Ok(Atom::Class { negated, ranges });
        }
        first = false;
        let low = if c == '\\' {
            let escaped = chars
                .get(*pos)
                .copied()
                .ok_or("error parsing regexp: missing closing ]")?;
            *pos += 1;
            escaped
        } else {
            c
        };
        if chars.get(*pos) == Some(&'-') && chars.get(*pos + 1).is_some_and(|&n| n != ']') {
            let high = chars[*pos + 1];
            *pos += 2;
            ranges.push((low, high));
        } else {
            ranges.push((low, low));
        }
    }
}

fn parse_repeat(chars: &[char], pos: &mut usize) -> (usize, Option<usize>) {
    let bounds = match chars.get(*pos) {
        Some('*') => (0, None),
        Some('+') => (1, None),
        Some('?') => (0, Some(1)),
        _ => return (1, Some(1)),
    };
    *pos += 1;
    bounds
}

/// Continuation-passing backtracking matcher: `next` receives the position
/// after a successful match and decides whether the overall match holds.
/// Status words are a few characters long, so backtracking cost is moot.
fn match_alternatives(
    alternatives: &[Vec<Piece>],
    text: &[char],
    pos: usize,
    next: &mut dyn FnMut(usize) -> bool,
) -> bool {
    alternatives
        .iter()
        .any(|sequence| match_sequence(sequence, text, pos, next))
}

fn match_sequence(
    pieces: &[Piece],
    text: &[char],
    pos: usize,
    next: &mut dyn FnMut(usize) -> bool,
) -> bool {
    let Some((piece, rest)) = pieces.split_first() else {
        return next(pos);
    };
    match_repeat(piece, 0, text, pos, &mut |after| {
        match_sequence(rest, text, after, next)
    })
}

/// Greedy repetition: try one more occurrence first, then stop here.
fn match_repeat(
    piece: &Piece,
    count: usize,
    text: &[char],
    pos: usize,
    next: &mut dyn FnMut(usize) -> bool,
) -> bool {
    let may_continue = piece.max.is_none_or(|max| count < max);
    if may_continue {
        let matched = match_atom(&piece.atom, text, pos, &mut |after| {
            // Past the minimum, an empty match makes no progress; refusing
            // it keeps patterns like `(a*)*` from looping forever.
            (after != pos || count < piece.min) && match_repeat(piece, count + 1, text, after, next)
        });
        if matched {
            return true;
        }
    }
    count >= piece.min && next(pos)
}

fn match_atom(atom: &Atom, text: &[char], pos: usize, next: &mut dyn FnMut(usize) -> bool) -> bool {
    match atom {
        Atom::Start => pos == 0 && next(pos),
        Atom::End => pos == text.len() && next(pos),
        Atom::Group(alternatives) => match_alternatives(alternatives, text, pos, next),
        Atom::Any => pos < text.len() && next(pos + 1),
        Atom::Literal(c) => text.get(pos) == Some(c) && next(pos + 1),
        Atom::Class { negated, ranges } => match text.get(pos) {
            Some(&c) => {
                let inside = ranges.iter().any(|&(low, high)| low <= c && c <= high);
                inside != *negated && next(pos + 1)
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        match StatusPattern::new(pattern) {
            Ok(compiled) => compiled.is_match(text),
            Err(err) => panic!("{pattern:?} failed to compile: {err}"),
        }
    }

    #[test]
    fn status_patterns_follow_go_regexp_semantics() {
        let cases: &[(&str, &str, bool)] = &[
            (".*", "alive", true),
            ("", "failed", true),
            ("alive", "alive", true),
            ("live", "alive", true),
            ("^live", "alive", false),
            ("^alive$", "alive", true),
            ("^al$", "alive", false),
            ("left|failed", "failed", true),
            ("left|failed", "alive", false),
            ("^(left|failed)$", "left", true),
            ("^(left|failed)$", "leaving", false),
            ("le(ft|aving)", "leaving", true),
            ("^a.i[uv]e$", "alive", true),
            ("^[^a]", "alive", false),
            ("^[a-f]+$", "failed", false),
            ("^[a-z]+$", "failed", true),
            ("fa?i+led", "filed", true),
            ("(a*)*x", "aaa", false),
            ("\\.", "alive", false),
        ];
        for &(pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern:?} on {text:?}");
        }
        for bad in ["(alive", "alive)", "[ab", "*a", "a\\"] {
            assert!(
                StatusPattern::new(bad).is_err(),
                "{bad:?} should not compile"
            );
        }
    }

    fn member(name: &str, role: &str, status: i64) -> Member {
        let mut tags = BTreeMap::from([
            ("role".to_string(), role.to_string()),
            ("dc".to_string(), "dc1".to_string()),
            ("build".to_string(), "0.1.0:abcdef".to_string()),
            ("vsn".to_string(), "2".to_string()),
        ]);
        if role.is_empty() {
            tags.remove("role");
        }
        Member {
            name: name.to_string(),
            addr: "127.0.0.1".to_string(),
            port: 8301,
            tags: Some(tags),
            status,
            protocol_cur: 2,
        }
    }

    fn prepared(members: Vec<Member>) -> Vec<Member> {
        let mut members: Vec<Member> = members
            .into_iter()
            .map(|m| with_display_tags(m, ALL_SEGMENTS))
            .collect();
        members.sort_by_key(sort_key);
        members
    }

    #[test]
    fn standard_table_lists_servers_first_with_consul_columns() {
        let members = prepared(vec![
            member("b-client", "node", 1),
            member("z-server", "consul", 1),
            member("a-client", "node", 4),
        ]);
        assert_eq!(
            columnize(&standard_rows(&members)),
            "Node      Address         Status  Type    Build  Protocol  DC   Partition  Segment\n\
             z-server  127.0.0.1:8301  alive   server  0.1.0  2         dc1  default    <all>\n\
             a-client  127.0.0.1:8301  failed  client  0.1.0  2         dc1  default    <default>\n\
             b-client  127.0.0.1:8301  alive   client  0.1.0  2         dc1  default    <default>"
        );
    }

    #[test]
    fn detailed_table_shows_sorted_tags_and_ipv6_addresses() {
        let mut server = member("s1", "consul", 3);
        server.addr = "::1".to_string();
        let members = prepared(vec![server]);
        assert_eq!(
            columnize(&detailed_rows(&members)),
            "Node  Address     Status  Tags\n\
             s1    [::1]:8301  left    ap=default,build=0.1.0:abcdef,dc=dc1,role=consul,segment=<all>,vsn=2"
        );
    }

    #[test]
    fn missing_tags_fall_back_like_consul() {
        let mut bare = member("n", "", 2);
        bare.tags = None;
        bare.protocol_cur = 3;
        let rows = standard_rows(&prepared(vec![bare]));
        assert_eq!(
            rows[1],
            [
                "n",
                "127.0.0.1:8301",
                "leaving",
                "client",
                "< 0.3",
                "3",
                "",
                "default",
                "<default>"
            ]
        );
        let odd = standard_rows(&prepared(vec![member("x", "witness", 1)]));
        assert_eq!(odd[1][3], "unknown");
        assert_eq!(odd[1].len(), 9);
    }
}
