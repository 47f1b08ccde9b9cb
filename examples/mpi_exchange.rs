//! The exchange of a data-parallel training step in isolation: the all-gather of every
//! shard's gradient (`Trainer::step_over`) for the phi^4 and U(1) default models at batch
//! 64, 1024 and 16384, timed on each rank (median of repeats, the slowest rank's).
//!
//! ```text
//! cargo build --release --features mpi --example mpi_exchange
//! mpirun -np 2 target/release/examples/mpi_exchange
//! ```

use latflow::flow::train::shard_count;
use std::time::Instant;

/// Parameters of the default models (docs/scaling.md counts them from their checkpoints).
const MODELS: [(&str, usize); 2] = [("phi4", 13_216), ("u1", 20_400)];

fn main() {
    let comm = latflow::cli::ranks::world().unwrap_or_else(|e| panic!("{e}"));
    let (p, r) = (comm.size(), comm.rank());
    if r == 0 {
        println!("{} ranks; ms per exchange (median of the repeats, slowest rank)", p);
        println!("{:<6} {:>6} {:>7} {:>14} {:>10}", "model", "batch", "shards", "bytes in all", "ms");
    }
    for (model, params) in MODELS {
        for batch in [64usize, 1024, 16384] {
            let shards = shard_count(batch);
            let mine = latflow::comm::share(shards, p, r).len();
            // what a rank sends for its shards: the gradient (4 bytes a parameter), 16 bytes
            // a sample (S, log q) and the loss
            let per_shard = 4 * params + 16 * batch / shards + 8;
            let local = vec![r as u8; mine * per_shard];
            let repeats = if batch > 1024 { 20 } else { 200 };
            let mut times = Vec::with_capacity(repeats);
            for _ in 0..repeats {
                comm.barrier();
                let t0 = Instant::now();
                let all = comm.all_gather(&local);
                times.push(t0.elapsed().as_secs_f64());
                assert_eq!(all.iter().map(Vec::len).sum::<usize>(), shards * per_shard);
            }
            times.sort_by(f64::total_cmp);
            let median = times[repeats / 2];
            let slowest: Vec<f64> = comm
                .all_gather(&median.to_le_bytes())
                .iter()
                .map(|b| f64::from_le_bytes(b[..8].try_into().unwrap()))
                .collect();
            if r == 0 {
                let ms = 1000.0 * slowest.iter().copied().fold(0.0, f64::max);
                println!("{model:<6} {batch:>6} {shards:>7} {:>14} {ms:>10.3}", shards * per_shard);
            }
        }
    }
}
