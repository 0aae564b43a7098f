//! Running Debian's `dig` against an agent and reading what the DNS tests
//! look at: status, header flags and the answer section.

use std::process::Command;

/// One record of the answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigRecord {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

#[derive(Debug)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    /// Answer records as `name type rdata`.
    pub answers: Vec<String>,
    pub records: Vec<DigRecord>,
    pub raw: String,
}

impl Dig {
    pub fn flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

pub fn dig_available() -> bool {
    Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `dig @127.0.0.1 -p <port> +time=5 +tries=1 <args>`.
pub fn dig(port: u16, args: &[&str]) -> Dig {
    let output = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string()])
        .args(["+time=5", "+tries=1"])
        .args(args)
        .output()
        .expect("run dig");
    let raw = String::from_utf8_lossy(&output.stdout).into_owned();
    let status = raw
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("NO ANSWER")
        .to_string();
    let flags = raw
        .lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .and_then(|l| l.split(';').next())
        .map(|f| f.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let records: Vec<DigRecord> = raw
        .split(";; ANSWER SECTION:\n")
        .nth(1)
        .map(|section| {
            section
                .lines()
                .take_while(|l| !l.is_empty())
                .map(|l| {
                    let fields: Vec<&str> = l.split_whitespace().collect();
                    DigRecord {
                        name: fields[0].to_string(),
                        ttl: fields[1].parse().expect("numeric TTL"),
                        rtype: fields[3].to_string(),
                        data: fields[4..].join(" "),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let answers = records
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.rtype, r.data))
        .collect();
    Dig {
        status,
        flags,
        answers,
        records,
        raw,
    }
}
