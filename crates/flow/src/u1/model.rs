//! The tutorial's U(1) flow (arXiv:2101.08176 section V): Haar prior and
//! gauge-equivariant NCP coupling layers, plus the Wilson action on the tape and the
//! topological charge of a batch.

use super::coupling::GaugeEquivCoupling;
use super::prior::HaarPrior;
use crate::model::{Flow, Layer};
use crate::net::Activation;
use crate::train::TapeAction;
use latflow_physics::{u1_action_var, Lattice, U1};
use latflow_tensor::{Float, Tensor, Var};
use rand::RngCore;

/// Most components of an NCP mixture.
pub const MAX_MIX: usize = 64;

/// Architecture of the U(1) flow. Defaults are the tutorial's.
#[derive(Clone, Debug, PartialEq)]
pub struct U1FlowConfig {
    /// Lattice extent (L x L), a multiple of 4 (the stripe masks repeat every 4 sites).
    /// Default 8.
    pub l: usize,
    /// Number of coupling layers; layer `i` updates direction `i % 2` at offset
    /// `(i / 2) % 4`. Default 16.
    pub layers: usize,
    /// Mixture components of each NCP coupling. Default 2.
    pub n_mix: usize,
    /// Hidden channel counts of each coupling's net. Default `[8, 8]`.
    pub hidden: Vec<usize>,
    /// Odd kernel size. Default 3.
    pub kernel: usize,
    /// The nets' hidden activation. Default the tutorial's LeakyReLU; tanh makes the flow
    /// smooth, which flow-HMC's leapfrog needs ([`crate::net::Activation`]).
    pub activation: Activation,
}

impl Default for U1FlowConfig {
    fn default() -> Self {
        U1FlowConfig { l: 8, layers: 16, n_mix: 2, hidden: vec![8, 8], kernel: 3, activation: Activation::TUTORIAL }
    }
}

impl U1FlowConfig {
    /// Checks the architecture, with a message naming the bad value.
    pub fn validate(&self) -> Result<(), String> {
        if self.l < 4 || !self.l.is_multiple_of(4) {
            return Err(format!(
                "lattice size L = {} must be a positive multiple of 4 (the coupling masks repeat every 4 sites)",
                self.l
            ));
        }
        crate::net::check_stack(self.l, self.kernel, self.layers, &self.hidden)?;
        if self.n_mix == 0 || self.n_mix > MAX_MIX {
            return Err(format!("the NCP mixture needs 1 to {MAX_MIX} components, got n_mix = {}", self.n_mix));
        }
        Ok(())
    }

    /// A freshly initialized flow.
    ///
    /// ```
    /// use latflow_flow::u1::U1FlowConfig;
    /// use rand::SeedableRng;
    /// let flow = U1FlowConfig::default().build::<f32>(&mut rand::rngs::StdRng::seed_from_u64(0));
    /// assert_eq!(flow.layers().len(), 16);
    /// assert_eq!(flow.named_params()[0].0, "0.plaq_coupling.net.0.weight");
    /// ```
    ///
    /// # Panics
    /// If [`U1FlowConfig::validate`] fails.
    pub fn build<T: Float>(&self, rng: &mut dyn RngCore) -> Flow<T> {
        if let Err(e) = self.validate() {
            panic!("U1FlowConfig: {e}");
        }
        let layers = (0..self.layers)
            .map(|i| {
                let c = GaugeEquivCoupling::new(self.l, i % 2, (i / 2) % 4, self.n_mix, &self.hidden, self.kernel, rng)
                    .with_activation(self.activation);
                Box::new(c) as Box<dyn Layer<T>>
            })
            .collect();
        Flow::new(Box::new(HaarPrior::new(self.l)), layers)
    }
}

/// The 2D Wilson action on the tape, `S = -beta sum_n cos P_01(n)`, links
/// `(N, 2, L, L) -> (N,)` (the tutorial's `U1GaugeAction`; delegates to
/// [`latflow_physics::u1_action_var`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct U1GaugeAction {
    /// Inverse coupling (the tutorial uses 2).
    pub beta: f64,
}

impl<T: Float> TapeAction<T> for U1GaugeAction {
    fn action(&self, x: &Var<T>) -> Var<T> {
        u1_action_var(x, self.beta)
    }
}

/// Topological charge `Q = (1/2 pi) sum_n wrap(P_01(n))` of each configuration of a batch
/// `(N, 2, L0, L1)` (wrap into `[-pi, pi)`, the tutorial's `topo_charge`), in f64.
///
/// # Panics
/// If `links` is not `(N, 2, L0, L1)`.
#[track_caller]
pub fn topological_charges<T: Float>(links: &Tensor<T>) -> Vec<f64> {
    let s = links.shape();
    assert!(s.len() == 4 && s[1] == 2, "topological_charges: need links (N, 2, L0, L1), got {s:?}");
    let g = U1::new(Lattice::new(&s[2..]), 1.0);
    let per = 2 * s[2] * s[3];
    let mut buf = vec![0.0; per];
    links
        .data()
        .chunks(per)
        .map(|c| {
            for (b, v) in buf.iter_mut().zip(c) {
                *b = v.to_f64();
            }
            g.topological_charge(&buf)
        })
        .collect()
}
