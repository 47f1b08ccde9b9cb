//! Peak FMA rate of this machine (the ceiling the conv2d benches compare against):
//! `cargo bench --bench fma_peak`.

mod fma;

fn main() {
    fma::print(&fma::measure());
}
