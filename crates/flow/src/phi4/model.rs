//! The phi^4 flow's architecture: a prior (standard normal by default, or the free field)
//! and coupling layers (the tutorial's affine couplings by default, or Z2-equivariant ones)
//! with alternating checkerboard masks (arXiv:2101.08176 section IV).

use super::affine::AffineCoupling;
use super::z2::{Z2Coupling, Z2Kind};
use crate::model::{Flow, Layer};
use crate::net::Activation;
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

/// The names of the coupling kinds for flags and checkpoint metadata: `affine`, `z2sym`
/// ([`Z2Kind::Symmetrized`]), `z2odd` ([`Z2Kind::OddNet`]); `Display` writes what `FromStr`
/// reads.
impl std::fmt::Display for Coupling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Coupling::Affine => "affine",
            Coupling::Z2(Z2Kind::Symmetrized) => "z2sym",
            Coupling::Z2(Z2Kind::OddNet) => "z2odd",
        })
    }
}

impl std::str::FromStr for Coupling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "affine" => Ok(Coupling::Affine),
            "z2sym" => Ok(Coupling::Z2(Z2Kind::Symmetrized)),
            "z2odd" => Ok(Coupling::Z2(Z2Kind::OddNet)),
            _ => Err(format!("unknown coupling {s:?}: expected affine, z2sym or z2odd")),
        }
    }
}

/// The priors' names for flags and checkpoint metadata: `normal`, `free:M2` (e.g.
/// `free:0.67`; the mass squared written with Rust's shortest round-trip formatting, so
/// `Display` then `FromStr` gives the same value bit for bit).
impl std::fmt::Display for PriorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PriorKind::Normal => f.write_str("normal"),
            PriorKind::Free { m2 } => write!(f, "free:{m2}"),
        }
    }
}

impl std::str::FromStr for PriorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "normal" {
            return Ok(PriorKind::Normal);
        }
        let bad = || format!("unknown prior {s:?}: expected normal or free:M2 with M2 > 0 (e.g. free:0.67)");
        let m2: f64 = s.strip_prefix("free:").ok_or_else(bad)?.parse().map_err(|_| bad())?;
        if !(m2.is_finite() && m2 > 0.0) {
            return Err(bad());
        }
        Ok(PriorKind::Free { m2 })
    }
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
    /// The nets' hidden activation (affine couplings; `z2odd`'s trunk is always tanh).
    /// Default the tutorial's LeakyReLU; tanh makes the flow smooth, which flow-HMC's
    /// leapfrog needs ([`crate::net::Activation`]).
    pub activation: Activation,
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
            activation: Activation::TUTORIAL,
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
        if self.activation != Activation::TUTORIAL && self.coupling != Coupling::Affine {
            return Err(format!(
                "activation {} is built for the affine coupling (z2odd's trunk is tanh already, z2sym keeps the \
                 tutorial's LeakyReLU)",
                self.activation.name()
            ));
        }
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
                    Box::new(AffineCoupling::new(l, l, i % 2, hidden, k, tanh, rng).with_activation(self.activation))
                        as Box<dyn Layer<T>>
                }
                Coupling::Z2(kind) => Box::new(Z2Coupling::new(l, l, i % 2, hidden, k, tanh, kind, rng)),
            })
            .collect();
        Flow::new(self.build_prior(), layers)
    }
}
