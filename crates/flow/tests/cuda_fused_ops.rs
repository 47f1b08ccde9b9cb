//! The flows' fused ops (and the physics crate's U(1) plaquette) on the GPU against the
//! CPU reference (feature `cuda`; needs a GPU and fails, not skips, without one), with the
//! harness of the engine's `crates/tensor/tests/cuda_ops.rs`. Inputs are fresh random
//! numbers (never zeros); every GPU output buffer is poisoned with NaN before its kernel
//! runs, so an element a kernel does not write fails. Each check runs the op forward, then
//! backward from `sum(op(x) * r)` with a random `r`, and compares values and all input
//! gradients.
#![cfg(feature = "cuda")]

use latflow_flow::ops::{GaugeOps, LatticeOps};
use latflow_tensor::{Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// f32 CPU vs GPU, elementwise ops: a few ulp (libm vs CUDA's transcendental functions),
/// relative to the largest reference magnitude.
const TOL_F32_ELEMENTWISE: f64 = 2e-6;
/// f32 CPU vs GPU, ops that sum (reductions, conv2d, gradients through them): the two
/// sides add in different orders.
const TOL_F32_SUM: f64 = 2e-5;

fn setup() {
    latflow_cuda_kernels::set_poison(true);
    if let Err(e) = Device::Cuda.check() {
        panic!("GPU tests need a GPU: {e}");
    }
}

/// Uniform in [lo, hi) with values of magnitude below `min_abs` pushed away from zero.
fn rand_t(shape: &[usize], lo: f64, hi: f64, rng: &mut StdRng) -> Tensor<f32> {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|_| {
            let x: f64 = rng.gen_range(lo..hi);
            (if x.abs() < 1e-3 { x + 0.01 } else { x }) as f32
        })
        .collect();
    Tensor::from_vec(shape, v)
}

/// max |gpu - cpu| / max |cpu| (NaN never passes).
fn rel_err(gpu: &Tensor<f32>, cpu: &Tensor<f32>) -> f64 {
    assert_eq!(gpu.shape(), cpu.shape(), "shapes differ");
    let g = gpu.to_host_vec();
    let scale = cpu.data().iter().fold(1e-30f64, |m, &x| m.max((x as f64).abs()));
    g.iter().zip(cpu.data()).map(|(&a, &b)| ((a as f64) - (b as f64)).abs() / scale).fold(0.0, |m, e| {
        if e.is_nan() || m.is_nan() {
            f64::NAN
        } else {
            m.max(e)
        }
    })
}

#[track_caller]
fn assert_close(what: &str, gpu: &Tensor<f32>, cpu: &Tensor<f32>, tol: f64) {
    assert!(gpu.is_cuda(), "{what}: result is not on the GPU");
    let e = rel_err(gpu, cpu);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

/// Runs `f` on both devices: values and the gradients of `sum(f(x) * r)` must agree.
#[track_caller]
fn check_op(name: &str, inputs: &[Tensor<f32>], tol: f64, f: impl Fn(&[Var<f32>], Device) -> Var<f32>) {
    let mut rng = StdRng::seed_from_u64(name.len() as u64 * 7919);
    let run = |dev: Device, r: Option<&Tensor<f32>>| {
        let vars: Vec<Var<f32>> = inputs.iter().map(|t| Var::param(t.to_device(dev).unwrap())).collect();
        let y = f(&vars, dev);
        let r = r.cloned().unwrap_or_else(|| Tensor::full(y.shape(), 1.0));
        let loss = y.mul(&Var::constant(r.to_device(dev).unwrap())).sum();
        let g = loss.backward();
        let grads: Vec<Tensor<f32>> = vars.iter().map(|v| g.get_or_zeros(v)).collect();
        (y.value().clone(), grads)
    };
    let (y_probe, _) = run(Device::Cpu, None);
    let r = rand_t(y_probe.shape(), -1.0, 1.0, &mut rng);
    let (yc, gc) = run(Device::Cpu, Some(&r));
    let (yg, gg) = run(Device::Cuda, Some(&r));
    assert_close(&format!("{name} forward"), &yg, &yc, tol);
    for (i, (a, b)) in gg.iter().zip(&gc).enumerate() {
        assert_close(&format!("{name} gradient of input {i}"), a, b, tol);
    }
}

#[test]
fn fused_coupling_matches_cpu() {
    setup();
    let mut rng = StdRng::seed_from_u64(8);
    let m = Tensor::from_vec(&[8, 8], (0..64).map(|i| ((i / 8 + i % 8) % 2) as f32).collect());
    let x = rand_t(&[37, 8, 8], -2.0, 2.0, &mut rng);
    let st = rand_t(&[37, 2, 8, 8], -1.0, 1.0, &mut rng);
    for reverse in [false, true] {
        check_op(&format!("affine_couple reverse {reverse}"), &[x.clone(), st.clone()], TOL_F32_ELEMENTWISE, |v, d| {
            v[0].affine_couple(&v[1], &m.to_device(d).unwrap(), reverse)
        });
    }
    for channel in 0..2 {
        check_op(&format!("masked_channel_sum {channel}"), std::slice::from_ref(&st), TOL_F32_SUM, |v, d| {
            v[0].masked_channel_sum(channel, &m.to_device(d).unwrap())
        });
    }
}

#[test]
fn fused_ncp_mixture_matches_cpu() {
    setup();
    let mut rng = StdRng::seed_from_u64(9);
    for n_mix in [1, 2, 3] {
        // angles away from the mod-2pi jumps of y (a jump on one side only is a 2 pi error)
        let x = rand_t(&[33, 4, 2], 0.2, 3.0, &mut rng);
        let s = rand_t(&[33, n_mix, 4, 2], -0.5, 0.5, &mut rng);
        let t = rand_t(&[33, 4, 2], 0.1, 0.6, &mut rng);
        check_op(&format!("ncp_mixture n={n_mix}"), &[x.clone(), s.clone(), t], TOL_F32_SUM, |v, _| {
            v[0].ncp_mixture(&v[1], &v[2])
        });
        check_op(&format!("ncp_log_jacobian n={n_mix}"), &[x, s], TOL_F32_SUM, |v, _| v[0].ncp_log_jacobian(&v[1]));
    }
}

#[test]
fn fused_u1_ops_match_cpu() {
    setup();
    let mut rng = StdRng::seed_from_u64(10);
    let links = rand_t(&[9, 2, 8, 12], 0.0, 6.2, &mut rng);
    check_op("u1_plaquette01", std::slice::from_ref(&links), TOL_F32_ELEMENTWISE, |v, _| v[0].u1_plaquette01());
    for mu in 0..2 {
        for off in [0, 3] {
            let (sa, sb) = if mu == 0 { (8, 3) } else { (2, 12) };
            // links and updates away from the mod-2pi jumps (one side jumping is a 2 pi error)
            let l = rand_t(&[9, 2, 8, 12], 1.0, 5.0, &mut rng);
            let ya = rand_t(&[9, sa, sb], 0.0, 0.4, &mut rng);
            let xa = rand_t(&[9, sa, sb], 0.0, 0.4, &mut rng);
            check_op(&format!("u1_stripe_update mu={mu} off={off}"), &[l, ya, xa], TOL_F32_ELEMENTWISE, |v, _| {
                v[0].u1_stripe_update(&v[1], &v[2], mu, off)
            });
        }
    }
}
