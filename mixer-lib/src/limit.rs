//! Token buckets for hellos: one per rack name and one for everyone.

use std::collections::HashMap;

use crate::store::Millis;

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Millis,
}

/// Hello rate limits: per name and global.
#[derive(Debug)]
pub(crate) struct HelloLimits {
    per_name: HashMap<String, Bucket>,
    global: Bucket,
    name_rate: f64,
    name_burst: f64,
    global_rate: f64,
    global_burst: f64,
}

impl HelloLimits {
    pub(crate) fn new(
        name_rate: f64,
        name_burst: f64,
        global_rate: f64,
        global_burst: f64,
    ) -> Self {
        HelloLimits {
            per_name: HashMap::new(),
            global: Bucket {
                tokens: global_burst,
                at: 0,
            },
            name_rate,
            name_burst,
            global_rate,
            global_burst,
        }
    }

    /// Takes a token for `name` and one from the global bucket; false when either is empty
    /// (and then neither is taken).
    pub(crate) fn allow(&mut self, name: &str, now: Millis) -> bool {
        refill(&mut self.global, now, self.global_rate, self.global_burst);
        if self.global.tokens < 1.0 {
            return false;
        }
        // Bounded memory: buckets that are full again are forgotten.
        if self.per_name.len() > 10_000 {
            let (rate, burst) = (self.name_rate, self.name_burst);
            self.per_name.retain(|_, b| {
                refill(b, now, rate, burst);
                b.tokens < burst
            });
        }
        let bucket = self
            .per_name
            .entry(name.to_owned())
            .or_insert_with(|| Bucket {
                tokens: self.name_burst,
                at: now,
            });
        refill(bucket, now, self.name_rate, self.name_burst);
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        self.global.tokens -= 1.0;
        true
    }
}

fn refill(bucket: &mut Bucket, now: Millis, rate: f64, burst: f64) {
    let elapsed = (now - bucket.at).max(0) as f64 / 1000.0;
    bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
    bucket.at = now;
}
