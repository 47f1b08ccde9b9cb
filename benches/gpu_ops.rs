//! The same ops on every backend: the scalar reference, the best CPU kernel (SIMD or
//! AVX-512, rayon threads) and latflow's CUDA kernel (timed with CUDA events, so the
//! figures are device time of the synchronized stream). Shapes are the tutorial's: 8x8
//! lattice, 3x3 kernel, channels 1->8, 8->8, 8->2; batch 1024 and 16384. Build with the
//! `cuda` feature and run where a GPU is:
//!
//! ```text
//! cargo bench --features cuda --bench gpu_ops               # criterion + summary table
//! GPU_OPS_SUMMARY_ONLY=1 cargo bench --features cuda --bench gpu_ops
//! ```
//!
//! The summary prints GFLOP/s and GB/s (each input read once, each output written once)
//! next to the ceilings measured on the device at the start: the FP32 rate of a tight FMA
//! loop and the bandwidth of a large device-to-device copy. Without the feature the bench
//! only says so.

#[cfg(not(feature = "cuda"))]
fn main() {
    eprintln!("gpu_ops: build with --features cuda (and run where a GPU is)");
}

#[cfg(feature = "cuda")]
fn main() {
    imp::main();
}

#[cfg(feature = "cuda")]
mod imp {
    use criterion::Criterion;
    use latflow::cuda_kernels::ops::{self as k, ConvShape};
    use latflow::cuda_kernels::{measure, DeviceBuf};
    use latflow::tensor::elementwise::Unary;
    use latflow::tensor::kernels::conv2d::{self, Backend, Conv2dShape};
    use latflow::tensor::Tensor;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    #[derive(Clone, Copy)]
    enum Op {
        ConvFwd(usize, usize),
        ConvBwdInput(usize, usize),
        ConvBwdWeight(usize, usize),
        Tanh,
    }

    impl Op {
        fn name(self) -> String {
            match self {
                Op::ConvFwd(a, b) => format!("conv_fwd/{a}-{b}"),
                Op::ConvBwdInput(a, b) => format!("conv_bwd_input/{a}-{b}"),
                Op::ConvBwdWeight(a, b) => format!("conv_bwd_weight/{a}-{b}"),
                Op::Tanh => "tanh/8ch".into(),
            }
        }
        fn shape(self, n: usize) -> Conv2dShape {
            let (cin, cout) = match self {
                Op::ConvFwd(a, b) | Op::ConvBwdInput(a, b) | Op::ConvBwdWeight(a, b) => (a, b),
                Op::Tanh => (8, 8),
            };
            Conv2dShape { n, cin, cout, h: 8, w: 8, k: 3 }
        }
        /// (flops, minimal bytes) of one call.
        fn work(self, n: usize) -> (f64, f64) {
            let s = self.shape(n);
            let macs = (s.n * s.cout * s.cin * s.h * s.w * s.k * s.k) as f64;
            let (x, y, w) = (s.input_len() as f64, s.output_len() as f64, s.weight_len() as f64);
            match self {
                Op::ConvFwd(..) => (2.0 * macs, 4.0 * (x + y + w)),
                Op::ConvBwdInput(..) => (2.0 * macs, 4.0 * (y + x + w)),
                Op::ConvBwdWeight(..) => (2.0 * macs, 4.0 * (y + x + w)),
                Op::Tanh => (y, 8.0 * y),
            }
        }
    }

    struct Case {
        s: Conv2dShape,
        x: Vec<f32>,
        w: Vec<f32>,
        b: Vec<f32>,
        g: Vec<f32>,
        out: Vec<f32>,
        db: Vec<f32>,
        dx_: DeviceBuf,
        dw_: DeviceBuf,
        db_: DeviceBuf,
        dg_: DeviceBuf,
        dout: DeviceBuf,
        ddb: DeviceBuf,
    }

    impl Case {
        fn new(op: Op, n: usize) -> Case {
            let s = op.shape(n);
            let mut rng = StdRng::seed_from_u64(1);
            let mut u = |len: usize| Tensor::<f32>::uniform(&[len], -1.0, 1.0, &mut rng).into_vec();
            let (x, w, b, g) = (u(s.input_len()), u(s.weight_len()), u(s.cout), u(s.output_len()));
            let out_len = match op {
                Op::ConvBwdInput(..) => s.input_len(),
                Op::ConvBwdWeight(..) => s.weight_len(),
                _ => s.output_len(),
            };
            Case {
                s,
                dx_: DeviceBuf::from_host(&x),
                dw_: DeviceBuf::from_host(&w),
                db_: DeviceBuf::from_host(&b),
                dg_: DeviceBuf::from_host(&g),
                dout: DeviceBuf::uninit(out_len),
                ddb: DeviceBuf::uninit(s.cout),
                x,
                w,
                b,
                g,
                out: vec![0.0; out_len],
                db: vec![0.0; s.cout],
            }
        }

        fn cpu(&mut self, op: Op, be: Backend) {
            let s = self.s;
            match op {
                Op::ConvFwd(..) => {
                    conv2d::forward_with(be, black_box(&self.x), &self.w, Some(&self.b), s, &mut self.out)
                }
                Op::ConvBwdInput(..) => conv2d::backward_input_with(be, black_box(&self.g), &self.w, s, &mut self.out),
                Op::ConvBwdWeight(..) => {
                    conv2d::backward_weight_with(be, black_box(&self.g), &self.x, s, &mut self.out, Some(&mut self.db))
                }
                Op::Tanh => Unary::Tanh.apply(black_box(&self.g), &mut self.out),
            }
            black_box(&self.out);
        }

        fn cuda(&mut self, op: Op) {
            let s = self.s;
            let cs = ConvShape { n: s.n, cin: s.cin, cout: s.cout, h: s.h, w: s.w, k: s.k };
            match op {
                Op::ConvFwd(..) => k::conv2d_fwd(&self.dx_, &self.dw_, Some(&self.db_), &mut self.dout, cs, 0, 0.0),
                Op::ConvBwdInput(..) => k::conv2d_bwd_input(&self.dg_, None, &self.dw_, &mut self.dout, cs),
                Op::ConvBwdWeight(..) => {
                    k::conv2d_bwd_weight(&self.dg_, None, &self.dx_, &mut self.dout, &mut self.ddb, cs, None)
                }
                Op::Tanh => k::unary_fwd(&self.dg_, &mut self.dout, 5, 0.0),
            }
        }
    }

    fn median_cpu(mut f: impl FnMut(), budget: Duration) -> f64 {
        f();
        let mut t = Vec::new();
        let start = Instant::now();
        while t.len() < 5 || (start.elapsed() < budget && t.len() < 200) {
            let t0 = Instant::now();
            f();
            t.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    }

    const OPS: [Op; 10] = [
        Op::ConvFwd(1, 8),
        Op::ConvFwd(8, 8),
        Op::ConvFwd(8, 2),
        Op::ConvBwdInput(1, 8),
        Op::ConvBwdInput(8, 8),
        Op::ConvBwdInput(8, 2),
        Op::ConvBwdWeight(1, 8),
        Op::ConvBwdWeight(8, 8),
        Op::ConvBwdWeight(8, 2),
        Op::Tanh,
    ];
    const BATCHES: [usize; 2] = [1024, 16384];

    pub fn main() {
        let g = latflow::cuda_kernels::gpu().unwrap_or_else(|e| panic!("gpu_ops bench: {e}"));
        let peak = measure::fma_peak_gflops();
        let bw = measure::copy_gbps(1 << 30);
        let best = |s: &Conv2dShape| *Backend::available::<f32>(s).last().expect("a CPU backend");
        if std::env::var_os("GPU_OPS_SUMMARY_ONLY").is_none() {
            let mut c = Criterion::default()
                .configure_from_args()
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(1))
                .sample_size(10);
            for n in BATCHES {
                for op in OPS {
                    let mut case = Case::new(op, n);
                    let name = format!("{}/b{n}", op.name());
                    if n <= 1024 {
                        c.bench_function(&format!("{name}/scalar"), |b| b.iter(|| case.cpu(op, Backend::Scalar)));
                    }
                    let be = best(&case.s);
                    c.bench_function(&format!("{name}/{}", be.name()), |b| b.iter(|| case.cpu(op, be)));
                    c.bench_function(&format!("{name}/cuda"), |b| {
                        b.iter(|| {
                            case.cuda(op);
                            g.synchronize();
                        })
                    });
                }
            }
            c.final_summary();
        }
        println!(
            "\nGPU: {} ({}); measured ceilings: FP32 FMA loop {peak:.0} GFLOP/s, device copy {bw:.0} GB/s",
            g.name(),
            g.arch()
        );
        println!("CPU: {} rayon threads", rayon::current_num_threads());
        println!(
            "{:<22} {:>6} {:>11} {:>11} {:>11} {:>9} {:>9} {:>8} {:>7} {:>7}",
            "op", "batch", "scalar ms", "cpu ms", "cuda ms", "cuda/cpu", "GFLOP/s", "GB/s", "%FP32", "%copy"
        );
        for n in BATCHES {
            for op in OPS {
                let mut case = Case::new(op, n);
                let scalar = if n <= 1024 {
                    median_cpu(|| case.cpu(op, Backend::Scalar), Duration::from_millis(300))
                } else {
                    f64::NAN
                };
                let be = best(&case.s);
                let cpu = median_cpu(|| case.cpu(op, be), Duration::from_millis(500));
                let generic = (!matches!(op, Op::Tanh)).then(|| {
                    latflow::cuda_kernels::set_conv_specialization(false);
                    let t = measure::median_ms(51, || case.cuda(op));
                    latflow::cuda_kernels::set_conv_specialization(true);
                    t
                });
                let cuda = measure::median_ms(51, || case.cuda(op));
                let (flops, bytes) = op.work(n);
                let (gf, gb) = (flops / (cuda * 1e-3) / 1e9, bytes / (cuda * 1e-3) / 1e9);
                println!(
                    "{:<22} {:>6} {:>11.4} {:>11.4} {:>11.4} {:>8.1}x {:>9.0} {:>8.0} {:>6.1}% {:>6.1}%  {}",
                    op.name(),
                    n,
                    scalar,
                    cpu,
                    cuda,
                    cpu / cuda,
                    gf,
                    gb,
                    100.0 * gf / peak,
                    100.0 * gb / bw,
                    generic.map_or(String::new(), |t| format!("(generic kernel {t:.4} ms)"))
                );
            }
        }
        // what one op costs the host: a launch, an allocation + free
        let mut one = DeviceBuf::uninit(1);
        g.synchronize();
        let t0 = Instant::now();
        for _ in 0..2000 {
            k::fill(&mut one, 1.0);
        }
        g.synchronize();
        let launch_us = t0.elapsed().as_secs_f64() * 1e6 / 2000.0;
        let t0 = Instant::now();
        for _ in 0..2000 {
            black_box(DeviceBuf::uninit(4096));
        }
        g.synchronize();
        let alloc_us = t0.elapsed().as_secs_f64() * 1e6 / 2000.0;
        println!("per-op host costs: kernel launch {launch_us:.2} us, device alloc + free {alloc_us:.2} us");
        println!(
            "(cpu = {} kernels; cuda = device time by events, median of 51)",
            best(&Conv2dShape { n: 1024, cin: 8, cout: 8, h: 8, w: 8, k: 3 }).name()
        );
    }
}
