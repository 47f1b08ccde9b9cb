//! The gradient audit of the flows' fused ops (the engine's [`latflow_tensor::audit`]
//! machinery: f64 central differences against the tape on seeded inputs). `latflow audit`
//! runs it after the engine's catalogue and the physics crate's.
//!
//! ```
//! let cases = latflow_flow::ops::audit::run_audit(0);
//! assert_eq!(cases.len(), 5);
//! assert!(cases.iter().all(|c| c.passed()), "{cases:?}");
//! ```

use super::LatticeOps;
use latflow_tensor::audit::{Audit, AuditCase};
use latflow_tensor::{Tensor, Var};

/// The `h x w` checkerboard mask `(i + j) mod 2`.
fn checkerboard(h: usize, w: usize) -> Tensor<f64> {
    Tensor::from_vec(&[h, w], (0..h * w).map(|i| ((i / w + i % w) % 2) as f64).collect())
}

/// Central-difference audit of every fused op of the flows, inputs drawn from `seed`.
pub fn run_audit(seed: u64) -> Vec<AuditCase> {
    let mut a = Audit::new(seed);
    // The affine coupling with the fused ops (forward and reverse directions).
    for (name, reverse) in [("fused affine_couple + masked_channel_sum", false), ("fused affine_couple reverse", true)]
    {
        let mask = checkerboard(4, 4);
        let inputs = vec![a.normal(&[2, 4, 4]), a.normal(&[2, 2, 4, 4]).map(|x| 0.5 * x)];
        a.check(name, inputs, move |v| {
            let inv = mask.map(|m| 1.0 - m);
            let y = v[0].affine_couple(&v[1], &mask, reverse);
            let logj = v[1].masked_channel_sum(0, &inv);
            Var::concat(&[y.reshape(&[2, 16]), logj.unsqueeze(1)], 1)
        });
    }

    // The fused NCP mixture (U(1) flows) and its log-Jacobian, 2 components; angles away
    // from the jumps of the mod 2 pi (inputs in (0.3, 2.8), small scales and offsets).
    let inputs = vec![
        a.uniform(&[2, 3, 4], 0.3, 2.8),
        a.normal(&[2, 2, 3, 4]).map(|x| 0.3 * x),
        a.uniform(&[2, 3, 4], 0.1, 0.5),
    ];
    a.check("fused ncp_mixture + ncp_log_jacobian", inputs, |v| {
        let y = v[0].ncp_mixture(&v[1], &v[2]);
        let logj = v[0].ncp_log_jacobian(&v[1]);
        Var::concat(&[y.reshape(&[2, 12]), logj.unsqueeze(1)], 1)
    });

    // The fused stripe update (both directions); link angles away from the mod-2pi jumps
    // (in (1, 5), small updates).
    for (name, mu) in [("fused u1_stripe_update mu=0", 0), ("fused u1_stripe_update mu=1", 1)] {
        let (sa, sb) = if mu == 0 { (4, 1) } else { (1, 4) };
        let inputs = vec![
            a.uniform(&[2, 2, 4, 4], 1.0, 5.0),
            a.uniform(&[2, sa, sb], 0.0, 0.3),
            a.uniform(&[2, sa, sb], 0.0, 0.3),
        ];
        a.check(name, inputs, move |v| v[0].u1_stripe_update(&v[1], &v[2], mu, 1));
    }
    a.into_cases()
}
