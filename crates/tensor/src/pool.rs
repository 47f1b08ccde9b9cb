//! Recycled tensor buffers: a per-thread free list of the `Vec`s of dropped tensors, so
//! an op's output buffer is usually one a previous op (or the previous training step)
//! let go of, instead of fresh memory that the allocator must hand out and zero.
//!
//! A training step builds the same graph again and again, so after the first step
//! nearly every request is for a length the pool holds. Without it, zeroing fresh
//! outputs (`vec![0.0; n]`, i.e. `calloc` + `memset`) and `malloc`/`free` took about a
//! sixth of a phi^4 training step at batch 1024.
//!
//! Contract: [`buffer`] returns a `Vec` of the requested length whose contents are
//! unspecified (but initialized) values; every caller overwrites every element before
//! anyone reads it. Only buffers of at least [`MIN_LEN`] elements and of a length some
//! op on this thread has asked [`buffer`] for are kept (so tensors of other lengths do
//! not pile up), and at most [`MAX_BYTES`] per thread and element type; the rest is
//! freed as usual.

use std::cell::RefCell;
use std::collections::HashMap;

/// Buffers shorter than this are not pooled (small allocations are cheap).
pub const MIN_LEN: usize = 1024;
/// Bytes a thread's pool (per element type) keeps at most.
pub const MAX_BYTES: usize = 128 << 20;

/// Free buffers by exact length; a length has an entry once [`buffer`] was asked for it.
#[derive(Default)]
pub struct Pool<T> {
    free: HashMap<usize, Vec<Vec<T>>, crate::id_hash::IdBuild>,
    bytes: usize,
}

impl<T> Pool<T> {
    fn take(&mut self, n: usize) -> Option<Vec<T>> {
        let v = self.free.entry(n).or_default().pop()?;
        self.bytes -= n * std::mem::size_of::<T>();
        Some(v)
    }
    fn give(&mut self, v: Vec<T>) {
        let bytes = v.len() * std::mem::size_of::<T>();
        if self.bytes + bytes <= MAX_BYTES {
            if let Some(list) = self.free.get_mut(&v.len()) {
                self.bytes += bytes;
                list.push(v);
            }
        }
    }
}

/// A buffer of `n` elements with unspecified (initialized) contents: a recycled one
/// when the pool has one of that length, else a zeroed allocation. The caller must
/// write every element.
pub fn buffer<T: PoolAccess + Copy + Default>(n: usize) -> Vec<T> {
    if n >= MIN_LEN {
        if let Some(v) = T::with_pool(|p| p.take(n)).flatten() {
            return v;
        }
    }
    vec![T::default(); n]
}

/// Hands a no longer used buffer to this thread's pool (dropped if it is small or the
/// pool is full, or while the thread shuts down).
pub fn recycle<T: PoolAccess>(v: Vec<T>) {
    if v.len() >= MIN_LEN {
        let _ = T::with_pool(move |p| p.give(v));
    }
}

/// Empties this thread's pools (tests and long-lived programs that change shapes).
pub fn clear() {
    let _ = f32::with_pool(|p| *p = Pool::default());
    let _ = f64::with_pool(|p| *p = Pool::default());
}

/// Bytes held by this thread's pool of `T` buffers.
pub fn held_bytes<T: PoolAccess>() -> usize {
    T::with_pool(|p| p.bytes).unwrap_or(0)
}

/// Runs `f` on the thread-local pool of `$t` (None while the thread is shutting down).
macro_rules! pool_access {
    ($t:ident, $key:ident) => {
        thread_local! {
            static $key: RefCell<Pool<$t>> = RefCell::new(Pool::default());
        }
        impl PoolAccess for $t {
            fn with_pool<R>(f: impl FnOnce(&mut Pool<$t>) -> R) -> Option<R> {
                $key.try_with(|p| p.try_borrow_mut().ok().map(|mut p| f(&mut p))).ok().flatten()
            }
        }
    };
}

/// Access to the thread-local pool of an element type.
pub trait PoolAccess: Sized {
    /// Runs `f` on this thread's pool; `None` while the thread shuts down (or on re-entry).
    fn with_pool<R>(f: impl FnOnce(&mut Pool<Self>) -> R) -> Option<R>;
}

pool_access!(f32, POOL_F32);
pool_access!(f64, POOL_F64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_length() {
        clear();
        let v = buffer::<f32>(4096);
        let p = v.as_ptr();
        recycle(v);
        assert_eq!(held_bytes::<f32>(), 4096 * 4);
        // another length does not get it
        let w = buffer::<f32>(2048);
        assert_ne!(w.as_ptr(), p);
        let u = buffer::<f32>(4096);
        assert_eq!(u.as_ptr(), p);
        assert_eq!(u.len(), 4096);
        assert_eq!(held_bytes::<f32>(), 0);
        // small buffers are not kept, nor lengths nobody asked for
        recycle(vec![0.0f64; 10]);
        recycle(vec![0.0f64; 5000]);
        assert_eq!(held_bytes::<f64>(), 0);
    }

    #[test]
    fn dropped_tensors_feed_the_pool() {
        clear();
        drop(buffer::<f64>(64 * 64));
        let t = crate::Tensor::<f64>::zeros(&[64, 64]);
        let p = t.data().as_ptr();
        let shared = t.clone();
        drop(t);
        // still shared: nothing recycled
        assert_eq!(held_bytes::<f64>(), 0);
        drop(shared);
        assert_eq!(held_bytes::<f64>(), 64 * 64 * 8);
        let again = buffer::<f64>(64 * 64);
        assert_eq!(again.as_ptr(), p);
    }
}
