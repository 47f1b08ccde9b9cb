//! `MPI_COMM_WORLD` through rsmpi (feature `mpi`).

use crate::Comm;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use mpi::Count;

/// The ranks of an MPI job (`mpirun -np N latflow ...`), over `MPI_COMM_WORLD`. MPI is
/// initialized with [`Mpi::init`] and finalized when this is dropped; only the thread that
/// initialized it calls MPI (`MPI_THREAD_FUNNELED`: rayon's threads compute, never
/// communicate).
pub struct Mpi {
    world: SimpleCommunicator,
    // dropped last: finalizes MPI
    _universe: Universe,
}

impl Mpi {
    /// Initializes MPI. `None` when it was initialized before.
    pub fn init() -> Option<Mpi> {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)?;
        Some(Mpi { world: universe.world(), _universe: universe })
    }

    /// The element counts and displacements of buffers of `lens` bytes, as MPI's `int`s.
    fn partition(lens: &[usize]) -> (Vec<Count>, Vec<Count>) {
        let count = |n: usize| {
            Count::try_from(n).unwrap_or_else(|_| panic!("MPI: {n} bytes in one collective, above MPI's int counts"))
        };
        let counts: Vec<Count> = lens.iter().map(|&n| count(n)).collect();
        let displs: Vec<Count> =
            lens.iter().scan(0usize, |at, &n| Some(std::mem::replace(at, *at + n))).map(count).collect();
        count(lens.iter().sum());
        (counts, displs)
    }

    /// A receive buffer of `n` bytes whose address is a real allocation (see [`nonempty`]).
    fn recv_buffer(n: usize) -> Vec<u8> {
        vec![0u8; n.max(1)]
    }

    fn split(buf: &[u8], lens: &[usize]) -> Vec<Vec<u8>> {
        let mut at = 0;
        lens.iter()
            .map(|&n| {
                at += n;
                buf[at - n..at].to_vec()
            })
            .collect()
    }
}

/// `local`, or when it is empty, an empty slice of `pad`: an empty `&[u8]` points at address
/// 1, which is OpenMPI's `MPI_IN_PLACE`, so MPI would read a zero-length send as "in place"
/// (an error on a non-root rank of a gather, `MPI_ERR_ARG`).
fn nonempty<'a>(local: &'a [u8], pad: &'a [u8; 1]) -> &'a [u8] {
    if local.is_empty() {
        &pad[..0]
    } else {
        local
    }
}

impl Comm for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_gather(&self, local: &[u8]) -> Vec<Vec<u8>> {
        let mut lens = vec![0u64; self.size()];
        self.world.all_gather_into(&(local.len() as u64), &mut lens[..]);
        let lens: Vec<usize> = lens.into_iter().map(|n| n as usize).collect();
        let (counts, displs) = Mpi::partition(&lens);
        let mut buf = Mpi::recv_buffer(lens.iter().sum());
        let mut part = PartitionMut::new(&mut buf[..], counts, displs);
        let pad = [0u8; 1];
        self.world.all_gather_varcount_into(nonempty(local, &pad), &mut part);
        Mpi::split(&buf, &lens)
    }
    fn gather(&self, root: usize, local: &[u8]) -> Option<Vec<Vec<u8>>> {
        let root_proc = self.world.process_at_rank(root as i32);
        let n = local.len() as u64;
        let pad = [0u8; 1];
        let local = nonempty(local, &pad);
        if self.rank() != root {
            root_proc.gather_into(&n);
            root_proc.gather_varcount_into(local);
            return None;
        }
        let mut lens = vec![0u64; self.size()];
        root_proc.gather_into_root(&n, &mut lens[..]);
        let lens: Vec<usize> = lens.into_iter().map(|n| n as usize).collect();
        let (counts, displs) = Mpi::partition(&lens);
        let mut buf = Mpi::recv_buffer(lens.iter().sum());
        let mut part = PartitionMut::new(&mut buf[..], counts, displs);
        root_proc.gather_varcount_into_root(local, &mut part);
        Some(Mpi::split(&buf, &lens))
    }
    fn barrier(&self) {
        self.world.barrier();
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
    fn describe(&self) -> String {
        format!("MPI: {} ranks", self.size())
    }
}
