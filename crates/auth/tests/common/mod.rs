//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use occoder_auth::{AccessControl, AuthConfig, ManualClock, NewClient, Role};
use tempfile::TempDir;

/// Start time of every test clock: 2026-03-02 10:00:00 UTC.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
}

/// Access control in a fresh temporary data directory with a manual clock.
pub struct Fixture {
    pub dir: TempDir,
    pub clock: Arc<ManualClock>,
    pub access: Arc<AccessControl>,
}

impl Fixture {
    pub fn new(config: AuthConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(start_time()));
        let access =
            Arc::new(AccessControl::open_with_clock(dir.path(), config, clock.clone()).unwrap());
        Self { dir, clock, access }
    }

    pub fn with_defaults() -> Self {
        Self::new(AuthConfig::default())
    }

    /// Opens a second instance on the same data directory and clock, as a restarted server or replica would.
    pub fn reopen(&self, config: AuthConfig) -> AccessControl {
        AccessControl::open_with_clock(self.dir.path(), config, self.clock.clone()).unwrap()
    }

    pub fn clock_now(&self) -> DateTime<Utc> {
        occoder_auth::Clock::now(self.clock.as_ref())
    }

    pub fn add_client(&self, role: Role) -> NewClient {
        self.access.registry().add("test client", role).unwrap()
    }
}
