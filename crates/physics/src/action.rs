//! The interface a sampler needs from a lattice action.

/// A lattice action `S(x)` on a flat `f64` configuration with its analytic force
/// `dS/dx`. Implemented by [`crate::Phi4`] and [`crate::U1`]; HMC is generic over it.
pub trait Action: Sync {
    /// Number of real degrees of freedom (length of a configuration slice).
    fn dof(&self) -> usize;

    /// The action `S(x)`.
    ///
    /// # Panics
    /// If `x.len() != dof()`.
    fn action(&self, x: &[f64]) -> f64;

    /// The force `out_i = dS/dx_i`, overwriting `out`.
    ///
    /// # Panics
    /// If `x.len()` or `out.len()` differs from `dof()`.
    fn force(&self, x: &[f64], out: &mut [f64]);

    /// Maps `x` in place to a canonical representative of the same physical
    /// configuration (angles into `[0, 2 pi)` for U(1)); the identity by default.
    /// Samplers call it after an accepted update, never inside a trajectory.
    fn canonicalize(&self, _x: &mut [f64]) {}

    /// Applies the action's global sign symmetry `x -> -x` in place, if it has one
    /// (`S(-x) = S(x)`: phi^4's Z2, U(1)'s charge conjugation `theta -> -theta`, which flips
    /// the topological charge), and says whether it did. Such a flip is an exact Markov
    /// step (it changes no weight); HMC offers one after each trajectory on request, which
    /// makes the chain ergodic between the two vacua of phi^4's broken phase and between
    /// the sectors `Q` and `-Q`. No symmetry by default.
    fn flip(&self, _x: &mut [f64]) -> bool {
        false
    }
}
