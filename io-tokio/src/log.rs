//! Minimal leveled logging to stderr, Consul-style lines
//! (`2026-11-29T16:00:00.000Z [INFO]  agent: message`).

use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(2);

const NAMES: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

/// Sets the level from `-log-level` (trace, debug, info, warn, err/error).
pub fn set_level(name: &str) -> Result<(), String> {
    let level = match name.to_ascii_lowercase().as_str() {
        "trace" => 0,
        "debug" => 1,
        "info" => 2,
        "warn" => 3,
        "err" | "error" => 4,
        other => return Err(format!("Invalid log level: {other}")),
    };
    LEVEL.store(level, Ordering::Relaxed);
    Ok(())
}

fn emit(level: u8, message: &str) {
    if level < LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = wall.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    eprintln!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z [{:<5}] {message}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        wall.subsec_millis(),
        NAMES[usize::from(level)]
    );
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn debug(message: &str) {
    emit(1, message);
}
pub fn info(message: &str) {
    emit(2, message);
}
pub fn warn(message: &str) {
    emit(3, message);
}
pub fn error(message: &str) {
    emit(4, message);
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_786), (2026, 11, 29));
    }
}
