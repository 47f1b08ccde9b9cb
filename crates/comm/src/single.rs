//! The communicator of a plain run: one rank.

use crate::Comm;

/// One process, rank 0 of 1: every collective hands back the local buffer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Comm for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_gather(&self, local: &[u8]) -> Vec<Vec<u8>> {
        vec![local.to_vec()]
    }
    fn gather(&self, _root: usize, local: &[u8]) -> Option<Vec<Vec<u8>>> {
        Some(vec![local.to_vec()])
    }
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
    fn describe(&self) -> String {
        "1 process".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rank_gets_its_own_buffer_back() {
        let c = SingleProcess;
        assert_eq!((c.rank(), c.size(), c.is_root()), (0, 1, true));
        assert_eq!(c.all_gather(&[1, 2, 3]), vec![vec![1, 2, 3]]);
        assert_eq!(c.gather(0, &[4]), Some(vec![vec![4]]));
        assert_eq!(c.broadcast(0, &[5, 6]), vec![5, 6]);
        c.barrier();
    }
}
