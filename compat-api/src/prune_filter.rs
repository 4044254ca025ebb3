//! The filters every prune endpoint shares: `label`, `label!` and `until`. A key a
//! prune does not know is refused with 400, as Docker does: ignoring it would delete
//! what the user filtered out.

use crate::error::{ApiError, ApiResult};
use std::collections::BTreeMap;

pub struct PruneFilter {
    label: Vec<String>,
    not_label: Vec<String>,
    /// Only objects created before this (ns since the epoch) go.
    until: Option<i64>,
}

impl PruneFilter {
    /// `extra` are the keys this prune reads itself (`dangling`, `all`); `until` only
    /// where Docker accepts it (not for volumes).
    pub fn parse(
        f: &BTreeMap<String, Vec<String>>,
        extra: &[&str],
        with_until: bool,
    ) -> ApiResult<PruneFilter> {
        for k in f.keys() {
            let known = matches!(k.as_str(), "label" | "label!")
                || (with_until && k == "until")
                || extra.contains(&k.as_str());
            if !known {
                return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
            }
        }
        let until = match f.get("until").map(Vec::as_slice) {
            None | Some([]) => None,
            Some([v]) => {
                let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
                Some(
                    engine::filters::parse_time(v, now)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?,
                )
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "more than one until filter specified",
                ));
            }
        };
        Ok(PruneFilter {
            label: f.get("label").cloned().unwrap_or_default(),
            not_label: f.get("label!").cloned().unwrap_or_default(),
            until,
        })
    }

    /// Whether an object with these labels, created at `created_nanos` (None: unknown,
    /// which `until` never admits, as in Docker), may be pruned.
    pub fn admits(&self, labels: &BTreeMap<String, String>, created_nanos: Option<i64>) -> bool {
        engine::filters::labels_match(&self.label, labels)
            && !engine::filters::labels_excluded(&self.not_label, labels)
            && self
                .until
                .is_none_or(|u| created_nanos.is_some_and(|c| c < u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(kv: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn unknown_keys_and_two_untils_are_refused() {
        assert!(PruneFilter::parse(&f(&[("foo", &["x"])]), &[], true).is_err());
        assert!(PruneFilter::parse(&f(&[("until", &["1h"])]), &[], false).is_err());
        assert!(PruneFilter::parse(&f(&[("until", &["1h", "2h"])]), &[], true).is_err());
        assert!(PruneFilter::parse(&f(&[("until", &["later"])]), &[], true).is_err());
        assert!(PruneFilter::parse(&f(&[("dangling", &["true"])]), &["dangling"], true).is_ok());
    }

    #[test]
    fn labels_and_age_decide() {
        let labels: BTreeMap<String, String> = [("keep".to_string(), "1".to_string())].into();
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let hour = 3_600_000_000_000;
        let p = PruneFilter::parse(&f(&[("until", &["30m"])]), &[], true).unwrap();
        assert!(p.admits(&labels, Some(now - hour)));
        assert!(!p.admits(&labels, Some(now)));
        assert!(!p.admits(&labels, None));
        let p = PruneFilter::parse(&f(&[("label!", &["keep"])]), &[], true).unwrap();
        assert!(!p.admits(&labels, Some(0)));
        assert!(p.admits(&BTreeMap::new(), Some(0)));
        let p = PruneFilter::parse(&f(&[("label", &["keep=1", "other"])]), &[], true).unwrap();
        assert!(!p.admits(&labels, Some(0)));
    }
}
