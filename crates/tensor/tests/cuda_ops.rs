//! Every op on the GPU against the CPU reference (feature `cuda`; needs a GPU and fails,
//! not skips, without one). Inputs are fresh random numbers (never zeros); every GPU
//! output buffer is poisoned with NaN before its kernel runs, so an element a kernel does
//! not write fails. Each check runs the op forward, then backward from
//! `sum(op(x) * r)` with a random `r`, and compares values and all input gradients.
#![cfg(feature = "cuda")]

use latflow_tensor::gpu_check::{assert_close, check_op, rand_t, rel_err, setup, TOL_F32_ELEMENTWISE, TOL_F32_SUM};

use latflow_cuda_kernels::ops::{self as k, ConvShape, WeightGradKernel};
use latflow_cuda_kernels::DeviceBuf;
use latflow_tensor::elementwise::Unary;
use latflow_tensor::{Adam, AdamConfig, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

#[test]
fn unary_ops_match_cpu() {
    setup();
    let mut rng = StdRng::seed_from_u64(1);
    let cases: Vec<(Unary<f32>, f64, f64)> = vec![
        (Unary::Neg, -3.0, 3.0),
        (Unary::AddScalar(0.7), -3.0, 3.0),
        (Unary::MulScalar(-1.3), -3.0, 3.0),
        (Unary::Exp, -5.0, 5.0),
        (Unary::Log, 0.05, 10.0),
        (Unary::Tanh, -4.0, 4.0),
        (Unary::LeakyRelu(0.01), -3.0, 3.0),
        (Unary::Sin, -10.0, 10.0),
        (Unary::Cos, -10.0, 10.0),
        (Unary::Tan, -1.3, 1.3),
        (Unary::Atan, -10.0, 10.0),
        (Unary::Powi(3), -2.0, 2.0),
        (Unary::Powi(-2), 0.5, 2.0),
        (Unary::RemEuclid(std::f32::consts::TAU), -20.0, 20.0),
    ];
    for (f, lo, hi) in cases {
        // 1000 elements: not a multiple of any block size
        let x = rand_t(&[10, 100], lo, hi, &mut rng);
        check_op(&format!("{f:?}"), &[x], TOL_F32_ELEMENTWISE, |v, _| v[0].unary(f));
    }
}

#[test]
fn binary_ops_match_cpu() {
    setup();
    let mut rng = StdRng::seed_from_u64(2);
    let a = rand_t(&[7, 3, 11], -2.0, 2.0, &mut rng);
    let b = rand_t(&[7, 3, 11], 0.5, 2.0, &mut rng);
    check_op("add", &[a.clone(), b.clone()], TOL_F32_ELEMENTWISE, |v, _| v[0].add(&v[1]));
    check_op("sub", &[a.clone(), b.clone()], TOL_F32_ELEMENTWISE, |v, _| v[0].sub(&v[1]));
    check_op("mul", &[a.clone(), b.clone()], TOL_F32_ELEMENTWISE, |v, _| v[0].mul(&v[1]));
    check_op("div", &[a.clone(), b.clone()], TOL_F32_ELEMENTWISE, |v, _| v[0].div(&v[1]));
    // a value used twice: gradients accumulate on the device
    check_op("x*x+x", &[a], TOL_F32_ELEMENTWISE, |v, _| v[0].mul(&v[0]).add(&v[0]));
}

#[test]
fn bias_mask_and_reductions_match_cpu() {
    setup();
    let mut rng = StdRng::seed_from_u64(3);
    let x = rand_t(&[5, 3, 4, 6], -2.0, 2.0, &mut rng);
    let b = rand_t(&[3], -1.0, 1.0, &mut rng);
    check_op("add_bias", &[x.clone(), b], TOL_F32_ELEMENTWISE, |v, _| v[0].add_bias(&v[1]));
    let m = rand_t(&[4, 6], -1.0, 1.0, &mut rng);
    check_op("mul_const", std::slice::from_ref(&x), TOL_F32_ELEMENTWISE, |v, d| {
        v[0].mul_const(&m.to_device(d).unwrap())
    });
    check_op("sum", std::slice::from_ref(&x), TOL_F32_SUM, |v, _| v[0].sum().reshape(&[1]));
    for axes in [vec![0], vec![1], vec![3], vec![2, 3], vec![1, 2, 3], vec![0, 2], vec![0, 1, 2, 3], vec![1, 3]] {
        check_op(&format!("sum_axes {axes:?}"), std::slice::from_ref(&x), TOL_F32_SUM, |v, _| v[0].sum_axes(&axes));
    }
    check_op("mean_axes", std::slice::from_ref(&x), TOL_F32_SUM, |v, _| v[0].mean_axes(&[1]));
    for axis in 0..4 {
        check_op(&format!("logsumexp {axis}"), std::slice::from_ref(&x), TOL_F32_SUM, |v, _| v[0].logsumexp(axis));
    }
    // a long reduction (the block-per-output kernel) and a wide one
    let long = rand_t(&[3, 5000], -1.0, 1.0, &mut rng);
    check_op("sum_axes long", std::slice::from_ref(&long), TOL_F32_SUM, |v, _| v[0].sum_axes(&[1]));
    check_op("sum long", &[long], TOL_F32_SUM, |v, _| v[0].sum().reshape(&[1]));
}

#[test]
fn layout_ops_match_cpu() {
    setup();
    let mut rng = StdRng::seed_from_u64(4);
    let x = rand_t(&[3, 4, 5, 6], -2.0, 2.0, &mut rng);
    for axis in 0..4 {
        for shift in [-7isize, -1, 1, 2, 9] {
            check_op(&format!("roll {axis} {shift}"), std::slice::from_ref(&x), TOL_F32_ELEMENTWISE, |v, _| {
                v[0].roll(axis, shift)
            });
        }
        check_op(&format!("narrow {axis}"), std::slice::from_ref(&x), TOL_F32_ELEMENTWISE, |v, _| {
            v[0].narrow(axis, 1, 2)
        });
    }
    check_op("select", std::slice::from_ref(&x), TOL_F32_ELEMENTWISE, |v, _| v[0].select(1, 3));
    let y = rand_t(&[3, 2, 5, 6], -2.0, 2.0, &mut rng);
    check_op("concat", &[x.clone(), y.clone()], TOL_F32_ELEMENTWISE, |v, _| {
        Var::concat(&[v[0].clone(), v[1].clone()], 1)
    });
    check_op("stack", &[x.clone(), x.mul_scalar_host(0.5)], TOL_F32_ELEMENTWISE, |v, _| {
        Var::stack(&[v[0].clone(), v[1].clone()], 2)
    });
    let b = rand_t(&[4, 1, 6], -2.0, 2.0, &mut rng);
    check_op("broadcast_to", &[b], TOL_F32_SUM, |v, _| v[0].broadcast_to(&[3, 4, 5, 6]));
    check_op("transpose", std::slice::from_ref(&x), TOL_F32_ELEMENTWISE, |v, _| v[0].t());
    let a = rand_t(&[2, 3, 4], -1.0, 1.0, &mut rng);
    let c = rand_t(&[2, 4, 5], -1.0, 1.0, &mut rng);
    check_op("matmul", &[a, c], TOL_F32_SUM, |v, _| v[0].matmul(&v[1]));
}

/// Host-side scaling for test inputs.
trait HostScale {
    fn mul_scalar_host(&self, c: f32) -> Tensor<f32>;
}
impl HostScale for Tensor<f32> {
    fn mul_scalar_host(&self, c: f32) -> Tensor<f32> {
        self.map(|x| x * c)
    }
}

#[test]
fn conv2d_matches_cpu_on_many_shapes() {
    setup();
    let mut rng = StdRng::seed_from_u64(5);
    // (n, cin, cout, h, w, k): odd and even sizes, channel counts around the tile of 8,
    // kernels 1..7, non-square lattices
    let shapes = [
        (3, 1, 8, 8, 8, 3),
        (4, 8, 8, 8, 8, 3),
        (2, 8, 2, 8, 8, 3),
        (5, 3, 9, 6, 10, 5),
        (2, 9, 17, 4, 4, 3),
        (3, 2, 3, 7, 5, 1),
        (2, 4, 5, 7, 7, 7),
        (1, 2, 3, 16, 16, 3),
        // more than 32 channels: the shape-specialized but untiled kernels
        (2, 40, 3, 4, 4, 3),
    ];
    for (i, (n, cin, cout, h, w, kk)) in shapes.into_iter().enumerate() {
        // kernels compiled for the shape (the default; tiled where they fit) and the generic
        // ones, alternately
        latflow_cuda_kernels::set_conv_specialization(i % 2 == 0);
        let x = rand_t(&[n, cin, h, w], -1.0, 1.0, &mut rng);
        let wt = rand_t(&[cout, cin, kk, kk], -0.5, 0.5, &mut rng);
        let b = rand_t(&[cout], -0.5, 0.5, &mut rng);
        for act in [None, Some(Unary::LeakyRelu(0.01)), Some(Unary::Tanh)] {
            let name = format!("conv2d {:?} act {act:?}", (n, cin, cout, h, w, kk));
            check_op(&name, &[x.clone(), wt.clone(), b.clone()], TOL_F32_SUM, |v, _| {
                v[0].conv2d_act(&v[1], Some(&v[2]), act)
            });
        }
        check_op("conv2d no bias", &[x.clone(), wt.clone()], TOL_F32_SUM, |v, _| v[0].conv2d(&v[1], None));
    }
    latflow_cuda_kernels::set_conv_specialization(true);
}

#[test]
fn conv2d_weight_gradient_kernels_agree() {
    setup();
    let mut rng = StdRng::seed_from_u64(6);
    // a batch that does not split evenly into chunks, and a lattice whose planes do not fit
    // in shared memory (the direct kernel is chosen on its own there)
    // (at most 4 output channels: the specialized kernel's narrower tile)
    // (5000 and 2600 samples: chunks of 10 and 6, staged 8 + 2 and 6 at a time)
    for (n, cin, cout, h, w, kk) in
        [(5000, 8, 8, 8, 8, 3), (37, 3, 10, 6, 6, 5), (2600, 8, 2, 8, 8, 3), (3, 8, 8, 32, 32, 3)]
    {
        let s = ConvShape { n, cin, cout, h, w, k: kk };
        let g = rand_t(&[n * cout * h * w], -1.0, 1.0, &mut rng);
        let x = rand_t(&[n * cin * h * w], -1.0, 1.0, &mut rng);
        let (gd, xd) = (DeviceBuf::from_host(g.data()), DeviceBuf::from_host(x.data()));
        let (mut ref_w, mut ref_b) = (vec![0.0f32; cout * cin * kk * kk], vec![0.0f32; cout]);
        let cs = latflow_tensor::kernels::conv2d::Conv2dShape { n, cin, cout, h, w, k: kk };
        let scalar = latflow_tensor::kernels::conv2d::Backend::Scalar;
        latflow_tensor::kernels::conv2d::backward_weight_with(
            scalar,
            g.data(),
            x.data(),
            cs,
            &mut ref_w,
            Some(&mut ref_b),
        );
        let ref_w = Tensor::from_vec(&[ref_w.len()], ref_w);
        let ref_b = Tensor::from_vec(&[ref_b.len()], ref_b);
        for specialized in [true, false] {
            latflow_cuda_kernels::set_conv_specialization(specialized);
            for kind in [WeightGradKernel::Smem, WeightGradKernel::Direct] {
                if kind == WeightGradKernel::Smem && k::weight_grad_kernel(s) == WeightGradKernel::Direct {
                    continue; // does not fit
                }
                let mut dw = DeviceBuf::uninit(cout * cin * kk * kk);
                let mut db = DeviceBuf::uninit(cout);
                k::conv2d_bwd_weight(&gd, None, &xd, &mut dw, &mut db, s, Some(kind));
                let got = Tensor::from_vec(&[dw.len()], dw.to_host());
                let e = rel_err(&got, &ref_w);
                assert!(e <= TOL_F32_SUM, "{kind:?} {s:?} specialized {specialized}: weight relative error {e:e}");
                let got = Tensor::from_vec(&[db.len()], db.to_host());
                let e = rel_err(&got, &ref_b);
                assert!(e <= TOL_F32_SUM, "{kind:?} {s:?} specialized {specialized}: bias relative error {e:e}");
            }
        }
        latflow_cuda_kernels::set_conv_specialization(true);
    }
}

#[test]
fn adam_matches_cpu() {
    setup();
    let mut rng = StdRng::seed_from_u64(7);
    let p0 = rand_t(&[1000], -1.0, 1.0, &mut rng);
    let q0 = rand_t(&[7], -1.0, 1.0, &mut rng);
    let cfg = AdamConfig { lr: 0.01, ..AdamConfig::default() };
    let mut cpu = (p0.clone(), q0.clone(), Adam::<f32>::new(cfg, &[1000, 7]));
    let mut gpu =
        (p0.to_device(Device::Cuda).unwrap(), q0.to_device(Device::Cuda).unwrap(), Adam::<f32>::new(cfg, &[1000, 7]));
    for _ in 0..5 {
        let gp = rand_t(&[1000], -1.0, 1.0, &mut rng);
        let gq = rand_t(&[7], -1.0, 1.0, &mut rng);
        cpu.2.step(&mut [&mut cpu.0, &mut cpu.1], &[&gp, &gq]);
        let (gpd, gqd) = (gp.to_device(Device::Cuda).unwrap(), gq.to_device(Device::Cuda).unwrap());
        gpu.2.step(&mut [&mut gpu.0, &mut gpu.1], &[&gpd, &gqd]);
    }
    assert_close("adam p", &gpu.0, &cpu.0, TOL_F32_ELEMENTWISE);
    assert_close("adam q", &gpu.1, &cpu.1, TOL_F32_ELEMENTWISE);
    let ((mc, vc), (mg, vg)) = (cpu.2.moments(), gpu.2.moments());
    assert_eq!(mc.len(), mg.len());
    for (a, b) in mc.iter().zip(&mg).chain(vc.iter().zip(&vg)) {
        let e = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(e <= 1e-6, "Adam moments differ by {e}");
    }
}

#[test]
fn nonfinite_checks_on_the_device() {
    setup();
    let good = Tensor::from_vec(&[3], vec![1.0f32, -2.0, 3.0]).to_device(Device::Cuda).unwrap();
    let bad = Tensor::from_vec(&[3], vec![1.0f32, f32::NAN, 3.0]).to_device(Device::Cuda).unwrap();
    let inf = Tensor::from_vec(&[2], vec![f32::INFINITY, 0.5]).to_device(Device::Cuda).unwrap();
    assert!(good.all_finite());
    assert!(!bad.all_finite());
    assert_eq!(latflow_tensor::tensor::first_nonfinite(&[&good, &good, &inf, &bad]), Some(2));
    assert_eq!(latflow_tensor::tensor::first_nonfinite(&[&good, &good]), None);
}

#[test]
fn mixed_devices_are_a_clear_error() {
    setup();
    let a = Var::constant(Tensor::from_vec(&[2], vec![1.0f32, 2.0]).to_device(Device::Cuda).unwrap());
    let b = Var::constant(Tensor::from_vec(&[2], vec![1.0f32, 2.0]));
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.add(&b))).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("to_device"), "message: {msg}");
    let f64_err = Tensor::from_vec(&[1], vec![1.0f64]).to_device(Device::Cuda).unwrap_err();
    assert!(f64_err.contains("f32"), "{f64_err}");
}
