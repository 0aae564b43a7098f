//! Consul-style command-line flag parsing.
//!
//! Consul's CLI is built on Go's `flag` package, and users (and scripts) rely
//! on its exact rules, so this parser reproduces them rather than the GNU
//! conventions most Rust parsers follow:
//!
//! - one or two leading dashes mean the same thing (`-recurse` == `--recurse`);
//! - values come as `-name=value` or `-name value`; boolean flags never consume
//!   the next argument, so `-stale false` means "stale, positional `false`"
//!   and booleans can only be switched off with `-name=false`;
//! - parsing stops at the first positional argument, at a lone `-` (which is a
//!   positional, e.g. "read stdin"), or after `--` (which is consumed).
//!   Flags after a positional are positionals too: `kv get foo -detailed`
//!   looks up a key named `foo` with one extra argument, as in Consul.
//!
//! Error texts match Go's so that scripts grepping for them keep working.

use std::collections::{BTreeMap, BTreeSet};

/// Declares one accepted flag. `takes_value: false` makes it a boolean switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagSpec {
    pub name: &'static str,
    pub takes_value: bool,
}

impl FlagSpec {
    /// A flag that carries a value (`-name=value` / `-name value`).
    pub const fn value(name: &'static str) -> FlagSpec {
        FlagSpec {
            name,
            takes_value: true,
        }
    }

    /// A boolean switch (`-name`, `-name=true`, `-name=false`).
    pub const fn switch(name: &'static str) -> FlagSpec {
        FlagSpec {
            name,
            takes_value: false,
        }
    }
}

/// The result of [`parse`]: value flags in the order given, the set of boolean
/// switches that ended up true, and everything after the flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub values: BTreeMap<String, Vec<String>>,
    pub bools: BTreeSet<String>,
    /// Switches explicitly turned off (`-shell=false`).
    pub off: BTreeSet<String>,
    pub positional: Vec<String>,
}

impl Parsed {
    /// The last value given for `name` (Go's flag package keeps the last one).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|all| all.last())
            .map(String::as_str)
    }

    /// Every value given for a repeatable flag such as `-tag`, in order.
    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether the boolean switch `name` is on.
    pub fn flag(&self, name: &str) -> bool {
        self.bools.contains(name)
    }

    /// A switch that is on unless turned off (Go's `BoolVar(.., true, ..)`).
    pub fn flag_default_on(&self, name: &str) -> bool {
        !self.off.contains(name)
    }
}

/// Parses `args` against `specs` with Go `flag` package semantics.
///
/// Errors carry Go's wording, e.g. `flag provided but not defined: -x`.
/// `-h`/`-help`, when not declared, yield Go's `flag: help requested`.
pub fn parse(args: &[String], specs: &[FlagSpec]) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut index = 0;
    while index < args.len() {
        let arg = &args[index];
        // A lone "-" or anything without a leading dash ends the flags.
        if arg.len() < 2 || !arg.starts_with('-') {
            break;
        }
        let mut name = &arg[1..];
        if let Some(rest) = name.strip_prefix('-') {
            if rest.is_empty() {
                // "--" terminates flags and is not itself a positional.
                index += 1;
                break;
            }
            name = rest;
        }
        if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
            return Err(format!("bad flag syntax: {arg}"));
        }
        let (name, inline_value) = match name.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (name, None),
        };
        let Some(spec) = specs.iter().find(|spec| spec.name == name) else {
            if name == "h" || name == "help" {
                return Err("flag: help requested".to_string());
            }
            return Err(format!("flag provided but not defined: -{name}"));
        };
        index += 1;
        if !spec.takes_value {
            let on = match inline_value {
                None => true,
                Some(text) => parse_go_bool(text).ok_or_else(|| {
                    format!("invalid boolean value {text:?} for -{name}: parse error")
                })?,
            };
            if on {
                parsed.bools.insert(name.to_string());
                parsed.off.remove(name);
            } else {
                parsed.bools.remove(name);
                parsed.off.insert(name.to_string());
            }
            continue;
        }
        let value = match inline_value {
            Some(value) => value.to_string(),
            None => {
                // Like Go, the next argument is taken even if it starts with
                // a dash: `-session -abc` sets session to "-abc".
                let Some(next) = args.get(index) else {
                    return Err(format!("flag needs an argument: -{name}"));
                };
                index += 1;
                next.clone()
            }
        };
        parsed
            .values
            .entry(name.to_string())
            .or_default()
            .push(value);
    }
    parsed.positional = args[index..].to_vec();
    Ok(parsed)
}

/// Go's `strconv.ParseBool`: the spellings a Go CLI accepts for booleans.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[FlagSpec] = &[
        FlagSpec::switch("recurse"),
        FlagSpec::switch("stale"),
        FlagSpec::value("separator"),
        FlagSpec::value("tag"),
        FlagSpec::value("http-addr"),
    ];

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn ok(list: &[&str]) -> Parsed {
        match parse(&args(list), SPECS) {
            Ok(parsed) => parsed,
            Err(err) => panic!("parse {list:?} failed: {err}"),
        }
    }

    fn err(list: &[&str]) -> String {
        match parse(&args(list), SPECS) {
            Ok(parsed) => panic!("parse {list:?} unexpectedly succeeded: {parsed:?}"),
            Err(err) => err,
        }
    }

    #[test]
    fn single_and_double_dash_forms() {
        let parsed = ok(&["-recurse", "--separator=:", "--http-addr", "h:1", "key"]);
        assert!(parsed.flag("recurse"));
        assert_eq!(parsed.value("separator"), Some(":"));
        assert_eq!(parsed.value("http-addr"), Some("h:1"));
        assert_eq!(parsed.positional, args(&["key"]));
    }

    #[test]
    fn value_may_be_empty_or_start_with_dash() {
        let parsed = ok(&["-separator=", "-tag", "-x", "rest"]);
        assert_eq!(parsed.value("separator"), Some(""));
        assert_eq!(parsed.value("tag"), Some("-x"));
        assert_eq!(parsed.positional, args(&["rest"]));
    }

    #[test]
    fn repeated_values_are_kept_in_order_and_last_wins() {
        let parsed = ok(&["-tag=a", "-tag", "b", "-tag=c"]);
        assert_eq!(parsed.all("tag"), &args(&["a", "b", "c"])[..]);
        assert_eq!(parsed.value("tag"), Some("c"));
        assert!(parsed.all("separator").is_empty());
        assert_eq!(parsed.value("separator"), None);
    }

    #[test]
    fn bools_accept_go_spellings_and_do_not_consume_next_arg() {
        let parsed = ok(&["-stale=true", "-recurse=T", "-recurse=0", "false"]);
        assert!(parsed.flag("stale"));
        assert!(!parsed.flag("recurse"));
        assert_eq!(parsed.positional, args(&["false"]));
        assert_eq!(
            err(&["-stale=yes"]),
            "invalid boolean value \"yes\" for -stale: parse error"
        );
    }

    #[test]
    fn flags_stop_at_first_positional_dash_or_double_dash() {
        let parsed = ok(&["key", "-recurse"]);
        assert!(!parsed.flag("recurse"));
        assert_eq!(parsed.positional, args(&["key", "-recurse"]));

        let parsed = ok(&["-recurse", "-", "-stale"]);
        assert!(parsed.flag("recurse"));
        assert_eq!(parsed.positional, args(&["-", "-stale"]));

        let parsed = ok(&["-stale", "--", "-recurse"]);
        assert!(parsed.flag("stale"));
        assert_eq!(parsed.positional, args(&["-recurse"]));
    }

    #[test]
    fn errors_use_go_wording() {
        assert_eq!(err(&["-x"]), "flag provided but not defined: -x");
        assert_eq!(err(&["--nope=1"]), "flag provided but not defined: -nope");
        assert_eq!(err(&["-tag"]), "flag needs an argument: -tag");
        assert_eq!(err(&["---tag"]), "bad flag syntax: ---tag");
        assert_eq!(err(&["-=x"]), "bad flag syntax: -=x");
        assert_eq!(err(&["-help"]), "flag: help requested");
    }

    #[test]
    fn empty_args_parse_to_nothing() {
        assert_eq!(ok(&[]), Parsed::default());
    }

    #[test]
    fn default_on_switches_turn_off_only_explicitly() {
        assert!(ok(&[]).flag_default_on("recurse"));
        assert!(ok(&["-recurse"]).flag_default_on("recurse"));
        assert!(!ok(&["-recurse=false"]).flag_default_on("recurse"));
        assert!(ok(&["-recurse=false", "-recurse"]).flag_default_on("recurse"));
    }
}
