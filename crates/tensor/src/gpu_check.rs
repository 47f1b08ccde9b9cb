//! The harness of the GPU tests (feature `cuda`): every op checked on the GPU against the
//! CPU on fresh random inputs, GPU outputs poisoned with NaN before each launch so that an
//! unwritten element fails, values and the gradients of `sum(op(x) * r)` compared within a
//! named f32 tolerance. Used by `crates/tensor/tests/cuda_ops.rs` (the engine's ops) and
//! `crates/flow/tests/cuda_fused_ops.rs` (the ops defined outside the engine); the tests
//! fail, not skip, without a GPU ([`setup`]).

use crate::{Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// f32 CPU vs GPU, elementwise ops: a few ulp (libm vs CUDA's transcendental functions),
/// relative to the largest reference magnitude.
pub const TOL_F32_ELEMENTWISE: f64 = 2e-6;
/// f32 CPU vs GPU, ops that sum (reductions, conv2d, gradients through them): the two
/// sides add in different orders.
pub const TOL_F32_SUM: f64 = 2e-5;

/// Turns output poisoning on and panics (the test fails) when no GPU can be used.
/// Turns output poisoning on; panics (the test fails) when no GPU can be used.
pub fn setup() {
    latflow_cuda_kernels::set_poison(true);
    if let Err(e) = Device::Cuda.check() {
        panic!("GPU tests need a GPU: {e}");
    }
}

/// Uniform in [lo, hi), values within 1e-3 of zero moved away from it.
pub fn rand_t(shape: &[usize], lo: f64, hi: f64, rng: &mut StdRng) -> Tensor<f32> {
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
pub fn rel_err(gpu: &Tensor<f32>, cpu: &Tensor<f32>) -> f64 {
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

/// Fails unless `gpu` lives on the GPU and agrees with `cpu` within `tol` ([`rel_err`]).
#[track_caller]
pub fn assert_close(what: &str, gpu: &Tensor<f32>, cpu: &Tensor<f32>, tol: f64) {
    assert!(gpu.is_cuda(), "{what}: result is not on the GPU");
    let e = rel_err(gpu, cpu);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

/// Runs `f` on both devices: values and the gradients of `sum(f(x) * r)` must agree.
#[track_caller]
pub fn check_op(name: &str, inputs: &[Tensor<f32>], tol: f64, f: impl Fn(&[Var<f32>], Device) -> Var<f32>) {
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
