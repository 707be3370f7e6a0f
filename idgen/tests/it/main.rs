//! The one integration-test binary of idgen; one module per area.

mod generator;
mod layout;
mod lease;
mod pool;
mod sonyflake;

use std::time::Duration;

use idgen::{EPOCH_UNIX_SECS, ManualClock};

/// A manual clock `secs` seconds after the id epoch.
fn clock_at(secs: u64) -> ManualClock {
    ManualClock::new(Duration::from_secs(EPOCH_UNIX_SECS + secs))
}
