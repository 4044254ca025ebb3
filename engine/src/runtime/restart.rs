//! Docker's restart policies: which exits restart the container, after what delay, and
//! the "stopped by the user" mark that cancels them.
//!
//! The container's monitor applies them (it sees the exit and outlives the process), so
//! they work with or without a daemon. Rules, as moby's restart manager has them:
//! `always` restarts whatever the exit, `unless-stopped` too unless the user stopped the
//! container, `on-failure[:N]` on a non-zero exit up to N times (0: no limit); nothing
//! restarts once the user stopped or killed it. The delay starts at 100 ms and doubles
//! up to a minute, back to 100 ms after a run of 10 s or more.

use crate::error::{Error, Result};
use crate::model::RestartPolicy;
use crate::paths::ContainerPaths;
use std::path::PathBuf;
use std::time::Duration;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run this long counts as healthy: the next delay starts over.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// Docker's checks of a policy at create and update (its wording).
pub fn validate(p: &RestartPolicy, auto_remove: bool) -> Result<()> {
    match p.name.as_str() {
        "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
        other => {
            return Err(Error::invalid(format!("invalid restart policy '{other}'")));
        }
    }
    if p.maximum_retry_count < 0 {
        return Err(Error::invalid(
            "invalid restart policy: maximum retry count cannot be negative",
        ));
    }
    if p.maximum_retry_count > 0 && p.name != "on-failure" {
        return Err(Error::invalid(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'",
        ));
    }
    if auto_remove && !matches!(p.name.as_str(), "" | "no") {
        return Err(Error::invalid(
            "can't create 'AutoRemove' container with restart policy",
        ));
    }
    Ok(())
}

/// Whether this exit restarts the container; `restarts` is how many restarts this run
/// of the policy has made so far.
pub fn should_restart(
    p: &RestartPolicy,
    exit_code: i32,
    stopped_by_user: bool,
    restarts: u32,
) -> bool {
    if stopped_by_user {
        return false;
    }
    match p.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => {
            exit_code != 0
                && (p.maximum_retry_count == 0 || i64::from(restarts) < p.maximum_retry_count)
        }
        _ => false,
    }
}

/// Whether a daemon starting up starts this stopped container again (moby's restore):
/// `always`, `unless-stopped` not stopped by the user, `on-failure` after a failure with
/// retries left. Only containers that ran before.
pub fn restart_on_daemon_start(
    p: &RestartPolicy,
    exit_code: i32,
    stopped_by_user: bool,
    restarts: u32,
) -> bool {
    match p.name.as_str() {
        "always" => true,
        _ => should_restart(p, exit_code, stopped_by_user, restarts),
    }
}

/// The delay before the next restart, given the last one and how long the run lasted.
pub fn next_delay(last: Option<Duration>, ran_for: Duration) -> Duration {
    match last {
        Some(d) if ran_for < RESET_AFTER => (d * 2).min(MAX_DELAY),
        _ => FIRST_DELAY,
    }
}

/// A mark file in a container's directory, left for its monitor by another process. Under
/// the data root: it must outlive a reboot.
pub struct Mark(&'static str);

/// Left by `stop`, `kill` and `rm`: the exit they cause does not restart the container (nor
/// does the next daemon start, for `unless-stopped`).
pub const STOPPED_BY_USER: Mark = Mark("stopped-by-user");
/// Left by `restart` before it stops the container: this exit is not the end of an `--rm`
/// container, which Docker keeps and starts again.
pub const RESTARTING: Mark = Mark("restarting");

impl Mark {
    pub fn path(&self, paths: &ContainerPaths) -> PathBuf {
        paths.dir.join(self.0)
    }

    pub fn set(&self, paths: &ContainerPaths) {
        let _ = std::fs::write(self.path(paths), b"");
    }

    pub fn clear(&self, paths: &ContainerPaths) {
        let _ = std::fs::remove_file(self.path(paths));
    }

    pub fn is_set(&self, paths: &ContainerPaths) -> bool {
        self.path(paths).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, max: i64) -> RestartPolicy {
        RestartPolicy {
            name: name.into(),
            maximum_retry_count: max,
        }
    }

    #[test]
    fn docker_rules() {
        assert!(!should_restart(&p("no", 0), 1, false, 0));
        assert!(!should_restart(&p("", 0), 1, false, 0));
        assert!(should_restart(&p("always", 0), 0, false, 7));
        assert!(!should_restart(&p("always", 0), 0, true, 0));
        assert!(should_restart(&p("unless-stopped", 0), 0, false, 0));
        assert!(!should_restart(&p("unless-stopped", 0), 3, true, 0));
        assert!(!should_restart(&p("on-failure", 0), 0, false, 0));
        assert!(should_restart(&p("on-failure", 0), 1, false, 100));
        assert!(should_restart(&p("on-failure", 2), 1, false, 1));
        assert!(!should_restart(&p("on-failure", 2), 1, false, 2));
        // A daemon start brings `always` back even after a user stop.
        assert!(restart_on_daemon_start(&p("always", 0), 0, true, 0));
        assert!(!restart_on_daemon_start(
            &p("unless-stopped", 0),
            0,
            true,
            0
        ));
        assert!(restart_on_daemon_start(
            &p("unless-stopped", 0),
            0,
            false,
            0
        ));
    }

    #[test]
    fn delays_double_to_a_minute_and_reset_after_a_long_run() {
        let quick = Duration::from_millis(5);
        let mut d = next_delay(None, quick);
        assert_eq!(d, Duration::from_millis(100));
        d = next_delay(Some(d), quick);
        assert_eq!(d, Duration::from_millis(200));
        for _ in 0..20 {
            d = next_delay(Some(d), quick);
        }
        assert_eq!(d, Duration::from_secs(60));
        assert_eq!(
            next_delay(Some(d), Duration::from_secs(10)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn validation_wording() {
        assert!(validate(&p("on-failure", 3), false).is_ok());
        assert!(validate(&p("", 0), true).is_ok());
        let e = |r: Result<()>| r.unwrap_err().to_string();
        assert_eq!(
            e(validate(&p("always", 0), true)),
            "can't create 'AutoRemove' container with restart policy"
        );
        assert_eq!(
            e(validate(&p("always", 2), false)),
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        );
        assert_eq!(
            e(validate(&p("sometimes", 0), false)),
            "invalid restart policy 'sometimes'"
        );
    }
}
