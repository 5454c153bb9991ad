//! Human durations for flags and configuration: `90`, `30s`, `5m`, `1h`,
//! `7d`, or a sum such as `1h30m`. A bare number means seconds.

/// Why a duration could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    /// Empty text.
    #[error("empty duration")]
    Empty,
    /// Not a number followed by a unit.
    #[error(
        "invalid duration {0:?}: use a number with an optional unit s, m, h or d, e.g. 30s, 5m, 1h"
    )]
    Invalid(String),
    /// More than a century.
    #[error("duration {0:?} is too long")]
    TooLong(String),
    /// A number with more digits than any duration needs.
    #[error("duration {text:?} is too long: {source}")]
    NumberTooLarge {
        /// The whole text given.
        text: String,
        /// Why the number did not parse (it overflowed).
        source: std::num::ParseIntError,
    },
}

/// Parses a duration into whole seconds.
pub fn parse_duration_secs(text: &str) -> Result<i64, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    let invalid = || DurationError::Invalid(text.to_string());
    let number = |digits: &str| {
        digits
            .parse::<i64>()
            .map_err(|source| DurationError::NumberTooLarge {
                text: text.to_string(),
                source,
            })
    };
    let mut total: i64 = 0;
    let mut digits = String::new();
    let mut saw_unit_last = false;
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            saw_unit_last = false;
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        if digits.is_empty() {
            return Err(invalid());
        }
        let n = number(&digits)?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| DurationError::TooLong(text.to_string()))?;
        digits.clear();
        saw_unit_last = true;
    }
    if !digits.is_empty() {
        if total != 0 || saw_unit_last {
            // "1h30" is ambiguous; insist on a unit after the first.
            return Err(invalid());
        }
        total = number(&digits)?;
    }
    if total > 100 * 365 * 86_400 {
        return Err(DurationError::TooLong(text.to_string()));
    }
    Ok(total)
}

/// Parses a duration into milliseconds: `500ms`, or anything
/// [`parse_duration_secs`] reads (`2s`, `1m`). For the few keys that take
/// sub-second intervals.
pub fn parse_duration_millis(text: &str) -> Result<u64, DurationError> {
    if let Some(ms) = text.trim().strip_suffix("ms") {
        if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DurationError::Invalid(text.to_string()));
        }
        return ms
            .parse::<u64>()
            .map_err(|source| DurationError::NumberTooLarge {
                text: text.to_string(),
                source,
            });
    }
    let secs = parse_duration_secs(text)?;
    // parse_duration_secs never returns a negative number or more than a
    // century, so the product fits.
    Ok(secs.unsigned_abs().saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_milliseconds() {
        assert_eq!(parse_duration_millis("500ms"), Ok(500));
        assert_eq!(parse_duration_millis("2s"), Ok(2000));
        assert_eq!(parse_duration_millis("1m"), Ok(60_000));
        assert!(parse_duration_millis("ms").is_err());
        assert!(parse_duration_millis("1.5ms").is_err());
        assert!(parse_duration_millis("-5ms").is_err());
    }

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration_secs("90"), Ok(90));
        assert_eq!(parse_duration_secs("30s"), Ok(30));
        assert_eq!(parse_duration_secs("5m"), Ok(300));
        assert_eq!(parse_duration_secs("1h30m"), Ok(5400));
        assert_eq!(parse_duration_secs("2d"), Ok(172_800));
    }

    #[test]
    fn rejects_junk() {
        for bad in ["", "h", "1x", "-5", "1h30", "1.5h", "99999999999999999999"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse_duration_secs("999999999d"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            parse_duration_secs("99999999999999999999s"),
            Err(DurationError::NumberTooLarge { .. })
        ));
    }
}
