//! The phi^4 flow's architecture: a standard normal prior and affine coupling layers with
//! alternating checkerboard masks (arXiv:2101.08176 section IV).

use super::affine::AffineCoupling;
use crate::model::{Flow, Layer};
use crate::prior::NormalPrior;
use latflow_tensor::Float;
use rand::RngCore;

/// Architecture of the phi^4 flow. Defaults are the tutorial's.
#[derive(Clone, Debug, PartialEq)]
pub struct Phi4FlowConfig {
    /// Lattice extent (L x L). Default 8.
    pub l: usize,
    /// Number of coupling layers. Default 16.
    pub layers: usize,
    /// Hidden channel counts of each coupling's net. Default `[8, 8]`.
    pub hidden: Vec<usize>,
    /// Odd kernel size. Default 3.
    pub kernel: usize,
    /// Tanh after the last convolution. Default true.
    pub final_tanh: bool,
}

impl Default for Phi4FlowConfig {
    fn default() -> Self {
        Phi4FlowConfig { l: 8, layers: 16, hidden: vec![8, 8], kernel: 3, final_tanh: true }
    }
}

impl Phi4FlowConfig {
    /// Checks the architecture, with a message naming the bad value.
    pub fn validate(&self) -> Result<(), String> {
        if self.l < 2 {
            return Err(format!("lattice size L = {} must be at least 2", self.l));
        }
        crate::net::check_stack(self.l, self.kernel, self.layers, &self.hidden)?;
        Ok(())
    }

    /// A freshly initialized flow (layer `i` has mask parity `i mod 2`).
    ///
    /// # Panics
    /// If [`Phi4FlowConfig::validate`] fails.
    pub fn build<T: Float>(&self, rng: &mut dyn RngCore) -> Flow<T> {
        if let Err(e) = self.validate() {
            panic!("Phi4FlowConfig: {e}");
        }
        let layers = (0..self.layers)
            .map(|i| {
                let c = AffineCoupling::new(self.l, self.l, i % 2, &self.hidden, self.kernel, self.final_tanh, rng);
                Box::new(c) as Box<dyn Layer<T>>
            })
            .collect();
        Flow::new(Box::new(NormalPrior::new(&[self.l, self.l])), layers)
    }
}
