//! Docker's human size strings (`64m`, `1g`, `512k`, `1.5GB`) to bytes.

use crate::error::{Error, Result};

/// Parses a size the way Docker's `units.RAMInBytes` does: binary multiples, an optional
/// `b`/`B` suffix after the unit, decimals allowed.
pub fn parse_size(s: &str) -> Result<u64> {
    let bad = || Error::invalid(format!("invalid size: '{s}'"));
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    if num.is_empty() {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return Err(bad()),
    };
    if value < 0.0 || !value.is_finite() {
        return Err(bad());
    }
    Ok((value * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("512K").unwrap(), 512 << 10);
        assert_eq!(parse_size("1.5GB").unwrap(), 3 << 29);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("10MiB").unwrap(), 10 << 20);
        assert!(parse_size("abc").is_err());
        assert!(parse_size("10x").is_err());
        assert!(parse_size("").is_err());
    }
}
