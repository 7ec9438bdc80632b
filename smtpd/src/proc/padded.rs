//! [`Padded`]: a value alone on its cache line, for what threads write at
//! the same time (counters, locks), so that writing one does not slow down
//! the threads using its neighbours.

use std::ops::Deref;

/// `T` aligned to (and filling) 128 bytes: two 64-byte lines, as adjacent
/// lines are fetched together on common CPUs.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
