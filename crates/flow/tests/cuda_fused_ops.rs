//! The flows' fused ops (and the physics crate's U(1) plaquette) on the GPU against the
//! CPU reference (feature `cuda`; needs a GPU and fails, not skips, without one), with the
//! harness of the engine's `crates/tensor/tests/cuda_ops.rs`. Inputs are fresh random
//! numbers (never zeros); every GPU output buffer is poisoned with NaN before its kernel
//! runs, so an element a kernel does not write fails. Each check runs the op forward, then
//! backward from `sum(op(x) * r)` with a random `r`, and compares values and all input
//! gradients.
#![cfg(feature = "cuda")]

use latflow_tensor::gpu_check::{check_op, rand_t, setup, TOL_F32_ELEMENTWISE, TOL_F32_SUM};

use latflow_flow::ops::{GaugeOps, LatticeOps};
use latflow_tensor::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

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
