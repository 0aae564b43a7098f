//! Identifier newtypes.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::NonZeroU128;
use std::str::FromStr;

/// A UUID (session and node IDs), stored as 16 bytes and shown in Consul's
/// 8-4-4-4-12 lowercase hex form. The nil UUID names nothing, so it is not a
/// value: that lets `Option<Uuid>` (a KV entry's lock holder) take 16 bytes
/// instead of 32, which every stored key pays for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Uuid(NonZeroU128);

impl Uuid {
    /// A session ID the leader has not assigned yet; `Leader::prepare`
    /// replaces it before the command is replicated.
    pub const UNASSIGNED: Uuid = Uuid::new(u128::MAX);

    /// The UUID with these 128 bits. Panics on 0 (the nil UUID), which no
    /// caller builds on purpose; untrusted text goes through `FromStr`.
    pub const fn new(value: u128) -> Uuid {
        match NonZeroU128::new(value) {
            Some(v) => Uuid(v),
            None => panic!("the nil UUID is not an identifier"),
        }
    }

    pub const fn as_u128(self) -> u128 {
        self.0.get()
    }
}

/// A session's ID.
pub type SessionId = Uuid;

/// A position in the replicated log; also Consul's `CreateIndex`/`ModifyIndex`.
pub type RaftIndex = u64;

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = format!("{:032x}", self.as_u128());
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

/// The text was not a UUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadUuid;

impl FromStr for Uuid {
    type Err = BadUuid;
    fn from_str(text: &str) -> Result<Self, BadUuid> {
        let bytes = text.as_bytes();
        if bytes.len() != 36 {
            return Err(BadUuid);
        }
        let mut value: u128 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if b != b'-' {
                    return Err(BadUuid);
                }
                continue;
            }
            let digit = (b as char).to_digit(16).ok_or(BadUuid)?;
            value = value << 4 | u128::from(digit);
        }
        NonZeroU128::new(value).map(Uuid).ok_or(BadUuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text() {
        let text = "adf4238a-882b-9ddc-4a9d-5b6758e4159e";
        let id: Uuid = text.parse().expect("valid uuid");
        assert_eq!(id.to_string(), text);
        assert_eq!("ADF4238A-882B-9DDC-4A9D-5B6758E4159E".parse(), Ok(id));
    }

    #[test]
    fn refuses_non_uuids() {
        for bad in [
            "",
            "abc",
            "adf4238a-882b-9ddc-4a9d-5b6758e4159",
            "zdf4238a-882b-9ddc-4a9d-5b6758e4159e",
        ] {
            assert_eq!(bad.parse::<Uuid>(), Err(BadUuid), "{bad}");
        }
        assert!("adf4238a+882b-9ddc-4a9d-5b6758e4159e"
            .parse::<Uuid>()
            .is_err());
    }
}
