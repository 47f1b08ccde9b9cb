//! conv2d kernels at the tutorial's shapes: 8x8 lattice, 3x3 kernel, channels 1->8,
//! 8->8, 8->2 (phi^4), 2->8, 8->3 (U(1)), batch 64 and 1024; forward, input gradient and
//! weight gradient; scalar reference vs SIMD (AVX2) vs SIMD + rayon threads, and for f32 the AVX-512 kernels
//! and the Winograd F(2x2, 3x3) and FFT ones (one thread, threads) where the CPU has them; f32
//! and f64.
//!
//! ```text
//! cargo bench --bench conv2d                    # peak FMA rate, criterion, summary table
//! CONV2D_SUMMARY_ONLY=1 cargo bench --bench conv2d   # peak + summary table only
//! cargo bench --bench conv2d -- f32/8-8         # only cases whose name contains the text
//! ```
//!
//! Criterion reports throughput as "elem/s" with one element = one flop (2 per
//! multiply-add), i.e. its Gelem/s are GFLOP/s. The summary table at the end is timed
//! separately (median of repeated calls) and gives GFLOP/s, the speedup over the scalar
//! reference and the fraction of the measured all-core peak FMA rate. Winograd rows add
//! a line with the true arithmetic rate (the flops the transforms and products really
//! execute, fewer than the direct `2 * MACs`) and the speedup over the direct AVX-512
//! kernel in the same run; FFT rows likewise, with the speedups over Winograd and direct.

mod fma;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use latflow_tensor::kernels::conv2d::{self, Backend, Conv2dShape};
use latflow_tensor::{Float, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Channel pairs of the tutorial's coupling nets: phi^4 1 -> 8 -> 8 -> 2, U(1) (NCP, 2
/// mixture components) 2 -> 8 -> 8 -> 3 (and 3 -> 8, the shape of 8 -> 3's input gradient).
const CHANNELS: [(usize, usize); 6] = [(1, 8), (8, 8), (8, 2), (2, 8), (8, 3), (3, 8)];
const BATCHES: [usize; 2] = [64, 1024];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Forward,
    BackwardInput,
    BackwardWeight,
}

impl Pass {
    const ALL: [Pass; 3] = [Pass::Forward, Pass::BackwardInput, Pass::BackwardWeight];
    fn name(self) -> &'static str {
        match self {
            Pass::Forward => "fwd",
            Pass::BackwardInput => "bwd_input",
            Pass::BackwardWeight => "bwd_weight",
        }
    }
}

/// Buffers of one case.
struct Bufs<T: Float> {
    s: Conv2dShape,
    x: Vec<T>,
    w: Vec<T>,
    b: Vec<T>,
    dy: Vec<T>,
    y: Vec<T>,
    dx: Vec<T>,
    dw: Vec<T>,
    db: Vec<T>,
}

impl<T: Float> Bufs<T> {
    fn new(s: Conv2dShape) -> Self {
        let mut rng = StdRng::seed_from_u64(1);
        let mut u = |len: usize| Tensor::<T>::uniform(&[len], -1.0, 1.0, &mut rng).into_vec();
        Bufs {
            s,
            x: u(s.input_len()),
            w: u(s.weight_len()),
            b: u(s.cout),
            dy: u(s.output_len()),
            y: vec![T::ZERO; s.output_len()],
            dx: vec![T::ZERO; s.input_len()],
            dw: vec![T::ZERO; s.weight_len()],
            db: vec![T::ZERO; s.cout],
        }
    }
    fn run(&mut self, pass: Pass, be: Backend) {
        let s = self.s;
        match pass {
            Pass::Forward => conv2d::forward_with(be, black_box(&self.x), &self.w, Some(&self.b), s, &mut self.y),
            Pass::BackwardInput => conv2d::backward_input_with(be, black_box(&self.dy), &self.w, s, &mut self.dx),
            Pass::BackwardWeight => {
                conv2d::backward_weight_with(be, black_box(&self.dy), &self.x, s, &mut self.dw, Some(&mut self.db))
            }
        }
        black_box((&self.y, &self.dx, &self.dw));
    }
}

fn shape(n: usize, cin: usize, cout: usize) -> Conv2dShape {
    Conv2dShape { n, cin, cout, h: 8, w: 8, k: 3 }
}

fn case_name<T: Float>(pass: Pass, cin: usize, cout: usize, n: usize) -> String {
    format!("{}/{}/{cin}-{cout}/b{n}", pass.name(), T::NAME)
}

/// Criterion flags that take a value (the value is not a filter).
const VALUE_FLAGS: [&str; 14] = [
    "--warm-up-time",
    "--measurement-time",
    "--sample-size",
    "--save-baseline",
    "--baseline",
    "--baseline-lenient",
    "--load-baseline",
    "--profile-time",
    "--output-format",
    "--color",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--nresamples",
];

/// Text filters from the command line (arguments that are neither flags nor their values).
fn filters() -> Vec<String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if VALUE_FLAGS.contains(&args[i].as_str()) {
            i += 2;
            continue;
        }
        if !args[i].starts_with('-') {
            out.push(args[i].clone());
        }
        i += 1;
    }
    out
}

fn selected(name: &str, filters: &[String]) -> bool {
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

fn criterion_cases<T: Float>(c: &mut Criterion, filters: &[String]) {
    for pass in Pass::ALL {
        for (cin, cout) in CHANNELS {
            for n in BATCHES {
                let name = format!("conv2d_{}", case_name::<T>(pass, cin, cout, n));
                if !selected(&name, filters) {
                    continue;
                }
                let s = shape(n, cin, cout);
                let mut bufs = Bufs::<T>::new(s);
                let mut g = c.benchmark_group(&name);
                g.throughput(Throughput::Elements(2 * s.macs() as u64));
                for be in Backend::available::<T>(&s) {
                    g.bench_function(BenchmarkId::from_parameter(be.name()), |bch| bch.iter(|| bufs.run(pass, be)));
                }
                g.finish();
            }
        }
    }
}

/// Median (or, with `CONV2D_BEST=1`, shortest) wall time of one call: at least 5 calls
/// and about `budget` in all.
fn median_time(mut f: impl FnMut(), budget: Duration) -> Duration {
    f();
    let start = Instant::now();
    let mut t = Vec::new();
    while t.len() < 5 || (start.elapsed() < budget && t.len() < 10_000) {
        let t0 = Instant::now();
        f();
        t.push(t0.elapsed());
    }
    t.sort();
    if std::env::var_os("CONV2D_BEST").is_some() {
        t[0]
    } else {
        t[t.len() / 2]
    }
}

/// Whether `be` is a Winograd backend.
fn is_winograd(be: Backend) -> bool {
    matches!(be, Backend::Winograd | Backend::WinogradThreaded)
}

/// Floating-point operations a Winograd call of `pass` really executes (products and
/// transform additions; the direct kernels execute `2 * MACs`).
#[cfg(target_arch = "x86_64")]
fn winograd_flops(s: &Conv2dShape, pass: Pass) -> f64 {
    use latflow_tensor::kernels::conv2d::Pass as W;
    use latflow_tensor::kernels::conv2d_winograd::flops;
    flops(
        s,
        match pass {
            Pass::Forward => W::Forward,
            Pass::BackwardInput => W::BackwardInput,
            Pass::BackwardWeight => W::BackwardWeight,
        },
    )
}
#[cfg(not(target_arch = "x86_64"))]
fn winograd_flops(_: &Conv2dShape, _: Pass) -> f64 {
    f64::NAN
}

/// Whether `be` is an FFT backend.
fn is_fft(be: Backend) -> bool {
    matches!(be, Backend::Fft | Backend::FftThreaded)
}

/// Floating-point operations an FFT call of `pass` really executes (products and
/// transforms).
#[cfg(target_arch = "x86_64")]
fn fft_flops(s: &Conv2dShape, pass: Pass) -> f64 {
    use latflow_tensor::kernels::conv2d::Pass as W;
    use latflow_tensor::kernels::conv2d_fft::flops;
    flops(
        s,
        match pass {
            Pass::Forward => W::Forward,
            Pass::BackwardInput => W::BackwardInput,
            Pass::BackwardWeight => W::BackwardWeight,
        },
    )
}
#[cfg(not(target_arch = "x86_64"))]
fn fft_flops(_: &Conv2dShape, _: Pass) -> f64 {
    f64::NAN
}

/// Backend columns of the summary table.
const COLUMNS: usize = 9;

/// One table row per case: median us and GFLOP/s of every backend this CPU offers, the
/// fastest one's speedup over the scalar reference and its share of the matching all-core
/// peak (the AVX-512 peak for AVX-512 and Winograd backends, the f32x8 / f64x4 one
/// otherwise). GFLOP/s in the backend cells are "effective": `2 * MACs` of the direct
/// convolution per second, whatever the backend executes. Where the Winograd backends run,
/// a second line per case gives their true arithmetic rate (the flops they execute,
/// [`winograd_flops`]) and its share of the AVX-512 peak (one thread for `winograd`, all
/// cores for `winograd+threads`), and the speedup of each Winograd backend over the direct
/// AVX-512 one with the same threading (both timed in the same run).
fn summary<T: Float>(peak: &fma::Peak, filters: &[String]) {
    let budget = Duration::from_millis(300);
    for pass in Pass::ALL {
        for (cin, cout) in CHANNELS {
            for n in BATCHES {
                let name = case_name::<T>(pass, cin, cout, n);
                if !selected(&format!("conv2d_{name}"), filters) {
                    continue;
                }
                let s = shape(n, cin, cout);
                let mut bufs = Bufs::<T>::new(s);
                let flops = 2.0 * s.macs() as f64;
                let backends = Backend::available::<T>(&s);
                let times: Vec<f64> =
                    backends.iter().map(|&be| median_time(|| bufs.run(pass, be), budget).as_secs_f64()).collect();
                let gf: Vec<f64> = times.iter().map(|t| flops / t / 1e9).collect();
                let best = (1..gf.len()).max_by(|&a, &b| gf[a].total_cmp(&gf[b])).unwrap_or(0);
                let peak_all = match backends[best] {
                    Backend::Avx512
                    | Backend::Avx512Threaded
                    | Backend::Winograd
                    | Backend::WinogradThreaded
                    | Backend::Fft
                    | Backend::FftThreaded => peak.avx512_all.unwrap_or(f64::NAN),
                    _ if T::NAME == "f32" => peak.f32_all,
                    _ => peak.f64_all,
                };
                let cells: Vec<String> =
                    times.iter().zip(&gf).map(|(t, g)| format!("{:>8.1} us {:>6.1}", t * 1e6, g)).collect();
                let pad = (backends.len()..COLUMNS).map(|_| format!("{:>18}", "-")).collect::<Vec<_>>();
                println!(
                    "| {name:<24} | {} | {:<16} | {:>6.1}x | {:>5.1}% |",
                    cells.iter().chain(&pad).cloned().collect::<Vec<_>>().join(" | "),
                    backends[best].name(),
                    gf[best] / gf[0],
                    100.0 * gf[best] / peak_all
                );
                let time_of = |be: Backend| backends.iter().position(|&b| b == be).map(|i| times[i]);
                let wflops = winograd_flops(&s, pass);
                let mut notes = Vec::new();
                for (wb, db, pk) in [
                    (Backend::Winograd, Backend::Avx512, peak.avx512_one),
                    (Backend::WinogradThreaded, Backend::Avx512Threaded, peak.avx512_all),
                ] {
                    if let (Some(tw), Some(td)) = (time_of(wb), time_of(db)) {
                        let true_gf = wflops / tw / 1e9;
                        notes.push(format!(
                            "{}: effective {:.1} GFLOP/s, true {:.1} GFLOP/s = {:.1}% of peak, {:.2}x {}",
                            wb.name(),
                            flops / tw / 1e9,
                            true_gf,
                            100.0 * true_gf / pk.unwrap_or(f64::NAN),
                            td / tw,
                            db.name()
                        ));
                    }
                }
                if !notes.is_empty() && backends.iter().any(|&b| is_winograd(b)) {
                    println!("|   {name} | {} |", notes.join("; "));
                }
                let fflops = fft_flops(&s, pass);
                let mut notes = Vec::new();
                for (fb, wb, db, pk) in [
                    (Backend::Fft, Backend::Winograd, Backend::Avx512, peak.avx512_one),
                    (Backend::FftThreaded, Backend::WinogradThreaded, Backend::Avx512Threaded, peak.avx512_all),
                ] {
                    if let (Some(tf), Some(tw), Some(td)) = (time_of(fb), time_of(wb), time_of(db)) {
                        let true_gf = fflops / tf / 1e9;
                        notes.push(format!(
                            "{}: effective {:.1} GFLOP/s, true {:.1} GFLOP/s = {:.1}% of peak, {:.2}x {}, {:.2}x {}",
                            fb.name(),
                            flops / tf / 1e9,
                            true_gf,
                            100.0 * true_gf / pk.unwrap_or(f64::NAN),
                            tw / tf,
                            wb.name(),
                            td / tf,
                            db.name()
                        ));
                    }
                }
                if !notes.is_empty() && backends.iter().any(|&b| is_fft(b)) {
                    println!("|   {name} | {} |", notes.join("; "));
                }
            }
        }
    }
}

fn main() {
    let filters = filters();
    let peak = fma::measure();
    fma::print(&peak);

    if std::env::var_os("CONV2D_SUMMARY_ONLY").is_none() {
        let mut c = Criterion::default()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(1))
            .sample_size(10)
            .configure_from_args();
        criterion_cases::<f32>(&mut c, &filters);
        criterion_cases::<f64>(&mut c, &filters);
        c.final_summary();
    }

    println!();
    println!("conv2d 8x8 lattice, 3x3 kernel, circular padding; median us per call, GFLOP/s = 2 * MACs / median.");
    println!(
        "all-core peak FMA: f32 {:.1} (f32x8) / {} (AVX-512) / f64 {:.1} GFLOP/s on {} threads.",
        peak.f32_all,
        peak.avx512_all.map_or("-".to_string(), |p| format!("{p:.1}")),
        peak.f64_all,
        peak.threads
    );
    println!("Each backend cell: median us per call, effective GFLOP/s (2 * direct MACs / median). best = fastest backend; % peak = best vs the all-core peak of its vector width.");
    println!(
        "| case (pass/dtype/cin-cout/batch) | scalar | simd | simd+threads | avx512 | avx512+threads | winograd | winograd+threads | fft | fft+threads | best | best/scalar | % peak |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    summary::<f32>(&peak, &filters);
    summary::<f64>(&peak, &filters);
}
