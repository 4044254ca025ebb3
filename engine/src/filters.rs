//! Docker's filter terms that several listings share: labels, `until` times and name
//! patterns. Docker ORs the values of most keys, but `label` is the exception: every
//! `label` value must hold (compose finds its project with `project=X` *and*
//! `oneoff=False`; OR-ing them would hand `compose down` other projects' containers).

use std::collections::BTreeMap;

/// One `label` term: `key` (present) or `key=value` (present and equal).
fn label_holds(term: &str, labels: &BTreeMap<String, String>) -> bool {
    match term.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(term),
    }
}

/// The `label` filter: true when there are no terms, else when every term holds.
pub fn labels_match(terms: &[String], labels: &BTreeMap<String, String>) -> bool {
    terms.iter().all(|t| label_holds(t, labels))
}

/// The prunes' `label!` filter: an object is kept out when every term holds (and there
/// is at least one), as Docker's `matchLabels` does.
pub fn labels_excluded(terms: &[String], labels: &BTreeMap<String, String>) -> bool {
    !terms.is_empty() && labels_match(terms, labels)
}

/// The `name` filter of `docker ps`: each value is a regular expression matched against
/// the name with and without Docker's leading `/` (`^/web$` and `^web$` both work). An
/// invalid pattern matches nothing, as in Docker.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match regex::Regex::new(pattern) {
        Ok(re) => re.is_match(name) || re.is_match(&format!("/{name}")),
        Err(_) => false,
    }
}

/// Why an `until` value was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid filter 'until={0}'")]
pub struct BadTime(pub String);

/// An `until` (or `since`) value as nanoseconds since the epoch. Docker accepts a Unix
/// time with an optional fraction, an RFC 3339 time or date, or a Go duration counted back
/// from `now_nanos` (`24h`, `1h30m`, `90s`).
pub fn parse_time(v: &str, now_nanos: i64) -> Result<i64, BadTime> {
    let v = v.trim();
    let bad = || BadTime(v.to_string());
    if v.is_empty() {
        return Err(bad());
    }
    if let Some(d) = go_duration_nanos(v) {
        return Ok(now_nanos - d);
    }
    if v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
        let secs: i64 = secs.parse().map_err(|_| bad())?;
        let mut digits: String = frac.chars().take(9).collect();
        while digits.len() < 9 {
            digits.push('0');
        }
        let nanos: i64 = digits.parse().map_err(|_| bad())?;
        return secs
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(nanos))
            .ok_or_else(bad);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return t.timestamp_nanos_opt().ok_or_else(bad);
    }
    // Docker reads a time without a zone as local time; this daemon's is UTC.
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, f) {
            return t.and_utc().timestamp_nanos_opt().ok_or_else(bad);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_utc().timestamp_nanos_opt())
            .ok_or_else(bad);
    }
    Err(bad())
}

/// A Go duration (`1h30m`, `1.5h`, `300ms`, `-2m`) in nanoseconds; None if it is not one.
fn go_duration_nanos(s: &str) -> Option<i64> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    // Docker reads a bare "0" as the Unix epoch, not as a zero duration.
    if rest.is_empty() || rest == "0" {
        return None;
    }
    let d = crate::units::parse_duration_ns(rest)?;
    Some(if neg { -d } else { d })
}

/// An RFC 3339 creation time (as records store it) in nanoseconds; 0 if unreadable.
pub fn created_nanos(created: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(created)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
    fn terms(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_label_term_must_hold() {
        let mine = labels(&[("project", "a"), ("oneoff", "False")]);
        let other = labels(&[("project", "b"), ("oneoff", "False")]);
        let want = terms(&["project=a", "oneoff=False"]);
        assert!(labels_match(&want, &mine));
        assert!(!labels_match(&want, &other));
        assert!(labels_match(&terms(&["project"]), &other));
        assert!(!labels_match(&terms(&["project", "missing"]), &other));
        assert!(labels_match(&[], &other));
        assert!(!labels_excluded(&[], &mine));
        assert!(labels_excluded(&terms(&["project=a"]), &mine));
        assert!(!labels_excluded(&terms(&["project=a", "keep"]), &mine));
    }

    #[test]
    fn names_are_regular_expressions_with_or_without_the_slash() {
        assert!(name_matches("^/web$", "web"));
        assert!(name_matches("^web$", "web"));
        assert!(name_matches("eb", "web"));
        assert!(!name_matches("^web$", "web2"));
        assert!(!name_matches("(", "web"));
    }

    #[test]
    fn until_takes_unix_times_dates_and_durations() {
        let now = 1_700_000_000_000_000_000;
        assert_eq!(parse_time("24h", now).unwrap(), now - 86_400_000_000_000);
        assert_eq!(parse_time("1h30m", now).unwrap(), now - 5_400_000_000_000);
        assert_eq!(parse_time("1.5s", now).unwrap(), now - 1_500_000_000);
        assert_eq!(parse_time("0", now).unwrap(), 0);
        assert_eq!(
            parse_time("1600000000.5", now).unwrap(),
            1_600_000_000_500_000_000
        );
        assert_eq!(
            parse_time("2020-09-13T12:26:40Z", now).unwrap(),
            1_600_000_000_000_000_000
        );
        assert_eq!(
            parse_time("2020-09-13", now).unwrap(),
            1_599_955_200_000_000_000
        );
        for bad in ["", "soon", "10x", "1h-", "2020-13-40"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }
}
