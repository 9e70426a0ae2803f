//! Parsers of flag values that are more than a number or a string.

use std::time::Duration;

/// Parses `NAME=BYTES`.
///
/// ```
/// use groupcache_cli::config::parse_page_size;
/// assert_eq!(parse_page_size("objects=65536"), Ok(("objects".to_string(), 65536)));
/// assert!(parse_page_size("objects").is_err());
/// ```
pub fn parse_page_size(s: &str) -> Result<(String, u64), String> {
    let (name, bytes) = s
        .split_once('=')
        .ok_or_else(|| format!("page size {s:?}: expected NAME=BYTES"))?;
    let bytes = bytes
        .parse()
        .map_err(|e| format!("page size of {name}: {bytes:?}: {e}"))?;
    Ok((name.to_string(), bytes))
}

/// Parses a duration: a number with the unit `ms`, `s` or `m` (seconds
/// when there is none).
///
/// ```
/// use std::time::Duration;
/// use groupcache_cli::config::parse_duration;
/// assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert!(parse_duration("0s").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| "expected a number with ms, s or m".to_string())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("unknown unit {unit:?}: use ms, s or m")),
    };
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}
