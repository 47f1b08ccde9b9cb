//! The tutorial's phi^4 flow (arXiv:2101.08176 section IV): a standard normal prior and
//! affine coupling layers with alternating checkerboard masks.

use crate::affine::AffineCoupling;
use crate::model::Flow;
use crate::prior::NormalPrior;
use latflow_tensor::Float;
use rand::Rng;

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

/// The phi^4 flow model type.
pub type Phi4Flow<T> = Flow<NormalPrior, AffineCoupling<T>>;

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
    pub fn build<T: Float, R: Rng + ?Sized>(&self, rng: &mut R) -> Phi4Flow<T> {
        if let Err(e) = self.validate() {
            panic!("Phi4FlowConfig: {e}");
        }
        let layers = (0..self.layers)
            .map(|i| AffineCoupling::new(self.l, self.l, i % 2, &self.hidden, self.kernel, self.final_tanh, rng))
            .collect();
        Flow { prior: NormalPrior::new(&[self.l, self.l]), layers }
    }
}
