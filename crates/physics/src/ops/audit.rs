//! The gradient audit of the physics crate's fused ops (the engine's
//! [`latflow_tensor::audit`] machinery: f64 central differences against the tape).
//!
//! ```
//! let cases = latflow_physics::ops::audit::run_audit(0);
//! assert!(cases.iter().all(|c| c.passed()), "{cases:?}");
//! ```

use super::GaugeOps;
use latflow_tensor::audit::{Audit, AuditCase};

/// Central-difference audit of every fused op of this crate, inputs drawn from `seed`.
pub fn run_audit(seed: u64) -> Vec<AuditCase> {
    let mut a = Audit::new(seed);
    let links = a.uniform(&[2, 2, 4, 4], 0.5, 5.5);
    a.check("fused u1_plaquette01", vec![links], |v| v[0].u1_plaquette01());
    a.into_cases()
}
