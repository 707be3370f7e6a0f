//! The memory budget that the connections of one gear share for the frames they are reading.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes taken by the connections of one gear (read buffers grown for frames in progress),
/// and the most they may take together (`partial_frame_budget`).
#[derive(Debug)]
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// The most the connections may take together.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// What the connections take now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A reservation of nothing yet, for one connection.
    pub(crate) fn reservation(&self) -> Reservation<'_> {
        Reservation {
            budget: self,
            held: 0,
        }
    }

    /// Takes `n` bytes if that keeps the total within the limit.
    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// One connection's part of a [`Budget`], given back whole when dropped, however the
/// connection ends (closed, refused, or its task aborted).
#[derive(Debug)]
pub(crate) struct Reservation<'a> {
    budget: &'a Budget,
    held: usize,
}

impl Reservation<'_> {
    /// What this reservation holds.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Makes the reservation hold exactly `bytes`: takes the difference from the budget, or
    /// gives the excess back. False, and the reservation unchanged, when the budget has not
    /// that much left.
    #[must_use]
    pub(crate) fn resize(&mut self, bytes: usize) -> bool {
        if bytes > self.held {
            if !self.budget.take(bytes - self.held) {
                return false;
            }
        } else {
            self.budget.give_back(self.held - bytes);
        }
        self.held = bytes;
        true
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::Budget;

    #[test]
    fn reservations_take_up_to_the_limit_and_give_back_on_drop() {
        let budget = Budget::new(100);
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        assert!(a.resize(60));
        assert!(!b.resize(41), "over the limit");
        assert_eq!(
            (b.held(), budget.used()),
            (0, 60),
            "a refusal changes nothing"
        );
        assert!(b.resize(40));
        assert_eq!(budget.used(), 100);
        assert!(a.resize(10), "shrinking always succeeds");
        assert!(b.resize(90));
        assert!(b.resize(0));
        assert_eq!((b.held(), budget.used()), (0, 10));
        assert!(b.resize(90));
        drop(b);
        assert_eq!(budget.used(), 10);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_reservation_never_overflows_the_count() {
        let budget = Budget::new(usize::MAX);
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        assert!(a.resize(usize::MAX));
        assert!(!b.resize(1));
        drop(a);
        assert!(b.resize(1));
    }
}
