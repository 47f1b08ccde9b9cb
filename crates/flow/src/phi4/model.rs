//! The phi^4 flow's architecture: a prior (standard normal by default, or the free field)
//! and coupling layers (the tutorial's affine couplings by default, or Z2-equivariant ones)
//! with alternating checkerboard masks (arXiv:2101.08176 section IV).

use super::affine::AffineCoupling;
use super::z2::{Z2Coupling, Z2Kind};
use crate::model::{Flow, Layer};
use crate::prior::{FreePrior, NormalPrior, Prior};
use latflow_tensor::Float;
use rand::RngCore;

/// Which coupling layers a phi^4 flow stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Coupling {
    /// The tutorial's affine coupling ([`AffineCoupling`]). The default.
    #[default]
    Affine,
    /// A Z2-equivariant affine coupling ([`Z2Coupling`]): `f(-z) = -f(z)`.
    Z2(Z2Kind),
}

/// The prior of a phi^4 flow. Neither has parameters: a checkpoint stores none, so the
/// caller records the choice in its metadata (e.g. `prior = "normal"` or `"free:0.5"`).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum PriorKind {
    /// Independent standard normals ([`NormalPrior`], the tutorial's). The default.
    #[default]
    Normal,
    /// The free field of mass squared `m2 > 0` ([`FreePrior`]): `N(0, (1/2)(-Laplacian + m2)^{-1})`.
    Free {
        /// The prior's mass squared `m_p^2`.
        m2: f64,
    },
}

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
    /// The coupling layers. Default [`Coupling::Affine`] (the tutorial's).
    pub coupling: Coupling,
    /// The prior. Default [`PriorKind::Normal`] (the tutorial's).
    pub prior: PriorKind,
}

impl Default for Phi4FlowConfig {
    fn default() -> Self {
        Phi4FlowConfig {
            l: 8,
            layers: 16,
            hidden: vec![8, 8],
            kernel: 3,
            final_tanh: true,
            coupling: Coupling::Affine,
            prior: PriorKind::Normal,
        }
    }
}

impl Phi4FlowConfig {
    /// Checks the architecture, with a message naming the bad value.
    pub fn validate(&self) -> Result<(), String> {
        if self.l < 2 {
            return Err(format!("lattice size L = {} must be at least 2", self.l));
        }
        crate::net::check_stack(self.l, self.kernel, self.layers, &self.hidden)?;
        if let PriorKind::Free { m2 } = self.prior {
            FreePrior::try_new(&[self.l, self.l], m2)?;
        }
        Ok(())
    }

    /// The prior of this architecture.
    ///
    /// # Panics
    /// If the free prior's mass squared is not positive and finite.
    pub fn build_prior<T: Float>(&self) -> Box<dyn Prior<T>> {
        match self.prior {
            PriorKind::Normal => Box::new(NormalPrior::new(&[self.l, self.l])),
            PriorKind::Free { m2 } => Box::new(FreePrior::new(&[self.l, self.l], m2)),
        }
    }

    /// A freshly initialized flow (layer `i` has mask parity `i mod 2`). The default
    /// architecture draws the same parameters from `rng` as before the coupling and prior
    /// options existed (priors draw nothing at build time).
    ///
    /// # Panics
    /// If [`Phi4FlowConfig::validate`] fails.
    pub fn build<T: Float>(&self, rng: &mut dyn RngCore) -> Flow<T> {
        if let Err(e) = self.validate() {
            panic!("Phi4FlowConfig: {e}");
        }
        let (l, hidden, k, tanh) = (self.l, &self.hidden, self.kernel, self.final_tanh);
        let layers = (0..self.layers)
            .map(|i| match self.coupling {
                Coupling::Affine => {
                    Box::new(AffineCoupling::new(l, l, i % 2, hidden, k, tanh, rng)) as Box<dyn Layer<T>>
                }
                Coupling::Z2(kind) => Box::new(Z2Coupling::new(l, l, i % 2, hidden, k, tanh, kind, rng)),
            })
            .collect();
        Flow::new(self.build_prior(), layers)
    }
}
