//! `p` ranks as `p` threads of one process: the distributed code paths, tested without MPI.

use crate::Comm;
use std::sync::{Arc, Barrier, Mutex};

/// One of `p` ranks that are threads of this process (made by [`ThreadRanks::group`] or
/// run by [`ThreadRanks::run`]). The collectives exchange buffers through shared slots
/// between two barriers, with the semantics of the MPI ones.
///
/// ```
/// use latflow_comm::{Comm, ThreadRanks};
/// let sums = ThreadRanks::run(3, |c| {
///     let all = c.all_gather(&[c.rank() as u8]);
///     all.iter().map(|b| b[0] as usize).sum::<usize>()
/// });
/// assert_eq!(sums, vec![3, 3, 3]);
/// ```
#[derive(Debug)]
pub struct ThreadRanks {
    rank: usize,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    slots: Mutex<Vec<Vec<u8>>>,
    barrier: Barrier,
}

impl ThreadRanks {
    /// The `p` ranks of a new group, rank `i` at index `i`; give each to its own thread.
    ///
    /// # Panics
    /// If `p` is zero.
    #[track_caller]
    pub fn group(p: usize) -> Vec<ThreadRanks> {
        assert!(p > 0, "ThreadRanks::group: at least one rank");
        let shared = Arc::new(Shared { slots: Mutex::new(vec![Vec::new(); p]), barrier: Barrier::new(p) });
        (0..p).map(|rank| ThreadRanks { rank, shared: shared.clone() }).collect()
    }

    /// Runs `f` on each of `p` ranks, one thread each, and returns their results in rank
    /// order. A panic on any rank is re-raised here (the other ranks may then never return:
    /// use it in tests).
    pub fn run<R: Send>(p: usize, f: impl Fn(&ThreadRanks) -> R + Sync) -> Vec<R> {
        let ranks = ThreadRanks::group(p);
        std::thread::scope(|s| {
            let handles: Vec<_> = ranks.iter().map(|c| s.spawn(|| f(c))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        })
    }

    fn exchange(&self, local: &[u8], read: bool) -> Option<Vec<Vec<u8>>> {
        self.shared.slots.lock().expect("a rank panicked")[self.rank] = local.to_vec();
        self.shared.barrier.wait();
        let all = read.then(|| self.shared.slots.lock().expect("a rank panicked").clone());
        // nobody writes the next collective's buffer before everyone has read this one
        self.shared.barrier.wait();
        all
    }
}

impl Comm for ThreadRanks {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.slots.lock().expect("a rank panicked").len()
    }
    fn all_gather(&self, local: &[u8]) -> Vec<Vec<u8>> {
        self.exchange(local, true).expect("read")
    }
    fn gather(&self, root: usize, local: &[u8]) -> Option<Vec<Vec<u8>>> {
        self.exchange(local, self.rank == root)
    }
    fn barrier(&self) {
        self.shared.barrier.wait();
    }
    fn abort(&self, code: i32) -> ! {
        panic!("rank {} of a ThreadRanks group aborted the job with code {code}", self.rank)
    }
    fn describe(&self) -> String {
        format!("{} threads as ranks", self.size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectives_deliver_every_ranks_buffer_in_rank_order() {
        let out = ThreadRanks::run(4, |c| {
            let mut seen = Vec::new();
            // several rounds of different lengths: no round sees another's buffers
            for round in 0..5u8 {
                let mine: Vec<u8> = vec![round * 10 + c.rank() as u8; c.rank() + round as usize];
                let all = c.all_gather(&mine);
                let root = c.gather(1, &mine);
                assert_eq!(root.is_some(), c.rank() == 1);
                if let Some(r) = root {
                    assert_eq!(r, all);
                }
                let b = c.broadcast(2, &mine);
                assert_eq!(b, vec![round * 10 + 2; 2 + round as usize]);
                seen.push(all);
            }
            seen
        });
        for (rank, seen) in out.iter().enumerate() {
            assert_eq!(seen, &out[0], "rank {rank}");
            for (round, all) in seen.iter().enumerate() {
                for (r, buf) in all.iter().enumerate() {
                    assert_eq!(buf, &vec![round as u8 * 10 + r as u8; r + round]);
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "rank 1 of a ThreadRanks group aborted the job with code 7")]
    fn abort_on_a_thread_rank_panics_with_its_rank() {
        ThreadRanks::run(1, |_| ());
        let g = ThreadRanks::group(2);
        g[1].abort(7);
    }
}
