//! Read buffers lent to connections while they move a body, and returned when they go idle.
//!
//! Why: a connection that kept its own 64 KiB read buffer (and the proxy one more for its
//! upstream) held it while idle, so 10k keep-alive connections after one request each held
//! 795 MB (≈ 65 KB each). Allocating a zeroed 64 KiB buffer per exchange instead showed in
//! the proxy's profiles, so buffers are pooled: taken when a body is to be read, given back
//! when the exchange ends. Idle connections read the next request head into a small buffer
//! of their own. No crate was worth a dependency for a mutex around a stack of `Vec`s.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Size of a pooled buffer.
pub const BIG_BUF: usize = 64 * 1024;
/// Size of the buffer an idle connection reads the next request head into.
pub const SMALL_BUF: usize = 2 * 1024;
/// Buffers kept for reuse at most (4 MiB): beyond it, a returned buffer is freed.
const MAX_POOLED: usize = 64;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A [`BIG_BUF`] read buffer on loan from the pool; given back on drop.
pub struct PooledBuf(Vec<u8>);

impl PooledBuf {
    /// A buffer from the pool, or a new one when the pool is empty.
    pub fn take() -> PooledBuf {
        let reused = POOL.lock().ok().and_then(|mut pool| pool.pop());
        PooledBuf(reused.unwrap_or_else(|| vec![0; BIG_BUF]))
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        if let Ok(mut pool) = POOL.lock() {
            if pool.len() < MAX_POOLED {
                pool.push(buf);
            }
        }
    }
}

impl Deref for PooledBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_the_pool_is_bounded() {
        let first = PooledBuf::take();
        let addr = first.as_ptr();
        assert_eq!(first.len(), BIG_BUF);
        drop(first);
        // Other tests may use the pool at the same time: the buffer comes back within a
        // few takes, and many returns never keep more than MAX_POOLED.
        let taken: Vec<PooledBuf> = (0..MAX_POOLED * 2).map(|_| PooledBuf::take()).collect();
        assert!(taken.iter().any(|b| b.as_ptr() == addr));
        drop(taken);
        assert!(POOL.lock().map(|p| p.len()).unwrap_or(0) <= MAX_POOLED);
    }
}
