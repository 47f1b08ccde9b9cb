//! The communicator latflow's training and sampling run over, so that one code path serves
//! one process, several ranks of an MPI job, and threads standing in for ranks in tests.
//!
//! - [`Comm`]: rank, size and the three collectives latflow needs (all-gather, gather to
//!   a root, barrier), on byte buffers.
//! - [`SingleProcess`]: the communicator of a plain run (size 1; every collective returns
//!   the local buffer). The default build has only this and [`ThreadRanks`].
//! - [`ThreadRanks`]: `p` ranks as `p` threads of one process, for tests of the
//!   distributed code paths without MPI.
//! - `Mpi` (feature `mpi`): `MPI_COMM_WORLD` through rsmpi.
//! - [`share`]: which contiguous part of `n` work items a rank takes.
//! - [`wire`]: floats and integers to little-endian bytes and back, bit for bit.
//!
//! Results that must not depend on the number of ranks are gathered item by item and
//! combined in item order on every rank (never reduced in an order that depends on who
//! computed what): floating-point addition is not associative, and an allreduce's tree
//! depends on the rank count. `docs/scaling.md` has the cost of this choice.

#[cfg(feature = "mpi")]
mod mpi_world;
mod single;
mod threads;
pub mod wire;

#[cfg(feature = "mpi")]
pub use mpi_world::Mpi;
pub use single::SingleProcess;
pub use threads::ThreadRanks;

use std::ops::Range;

/// A group of ranks that exchange byte buffers. Every rank calls every collective in the
/// same order (MPI's rule); a rank that does not, or dies, leaves the others waiting until
/// the launcher (`mpirun`) ends the job.
pub trait Comm {
    /// This rank, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Every rank's `local` buffer, in rank order, on every rank (`MPI_Allgatherv`). The
    /// buffers may differ in length.
    fn all_gather(&self, local: &[u8]) -> Vec<Vec<u8>>;
    /// Every rank's `local` buffer, in rank order, on `root` (`Some`); `None` on the other
    /// ranks (`MPI_Gatherv`).
    fn gather(&self, root: usize, local: &[u8]) -> Option<Vec<Vec<u8>>>;
    /// Waits until every rank has called it.
    fn barrier(&self);
    /// Ends the whole job with exit status `code` (`MPI_Abort`): for an error on one rank
    /// that the others cannot know of and would wait for forever.
    fn abort(&self, code: i32) -> !;
    /// For the run's first line: `1 process`, `MPI: 4 ranks`.
    fn describe(&self) -> String;

    /// Whether this is rank 0, the one that writes files and prints.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
    /// Rank `root`'s `data` on every rank (an all-gather of which only `root`'s part counts).
    fn broadcast(&self, root: usize, data: &[u8]) -> Vec<u8> {
        let mine = if self.rank() == root { data } else { &[] };
        self.all_gather(mine).swap_remove(root)
    }
}

/// The contiguous part of `n` items that `rank` of `size` takes: ranks `0..n % size` take
/// `n / size + 1` items, the others `n / size`, in rank order, so the parts of all ranks
/// are disjoint and cover `0..n` in order.
///
/// ```
/// assert_eq!(latflow_comm::share(10, 3, 0), 0..4);
/// assert_eq!(latflow_comm::share(10, 3, 1), 4..7);
/// assert_eq!(latflow_comm::share(10, 3, 2), 7..10);
/// ```
///
/// # Panics
/// If `size` is zero or `rank >= size`.
#[track_caller]
pub fn share(n: usize, size: usize, rank: usize) -> Range<usize> {
    assert!(rank < size, "share: rank {rank} of {size} ranks");
    let (q, r) = (n / size, n % size);
    let start = rank * q + rank.min(r);
    start..start + q + usize::from(rank < r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_disjoint_cover_in_order_and_balanced() {
        for n in 0..40 {
            for size in 1..9 {
                let parts: Vec<Range<usize>> = (0..size).map(|r| share(n, size, r)).collect();
                let mut next = 0;
                for p in &parts {
                    assert_eq!(p.start, next, "n {n} size {size}: {parts:?}");
                    next = p.end;
                }
                assert_eq!(next, n);
                let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1, "{lens:?}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "rank 3 of 3 ranks")]
    fn share_refuses_a_rank_outside_the_group() {
        share(5, 3, 3);
    }
}
