//! The gauge-equivariant coupling's link update (arXiv:2101.08176 section V.A) as one op
//! ([`u1_stripe_update`]). Forward and backward here, the CPU kernels in [`cpu`], the
//! CUDA half in `cuda.rs` with its kernels in `kernel.cu` (feature `cuda`).

pub mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
pub(crate) use cuda::module as cuda_module;

use latflow_tensor::{CustomOp, Float, Tensor, Var};

/// The stripe update `(links, y_a, x_a)` for direction `mu` and offset `off`.
struct U1StripeUpdate {
    mu: usize,
    off: usize,
}

impl<T: Float> CustomOp<T> for U1StripeUpdate {
    fn name(&self) -> &'static str {
        "u1_stripe_update"
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let (l, y, x) = (inputs[0], inputs[1], inputs[2]);
        #[cfg(feature = "cuda")]
        if l.is_cuda() {
            return cuda::stripe_update(l, y, x, self.mu, self.off);
        }
        let s = l.shape();
        let mut o = latflow_tensor::pool::buffer(l.len());
        cpu::stripe_update(l.data(), y.data(), x.data(), s[0], s[2], s[3], self.mu, self.off, &mut o);
        Tensor::from_vec(s, o)
    }

    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _y: &Tensor<T>,
        g: &Tensor<T>,
        _needs: &[bool],
    ) -> Vec<Option<Tensor<T>>> {
        // mod 2 pi has derivative 1: the links pass g through; y_a gets +-g at the stripe,
        // x_a its negative
        let (s, ys) = (inputs[0].shape(), inputs[1].shape());
        #[cfg(feature = "cuda")]
        if g.is_cuda() {
            let (dya, dxa) = cuda::stripe_update_grad(g, ys, self.mu, self.off);
            return vec![Some(g.clone()), Some(dya), Some(dxa)];
        }
        let mut dya = latflow_tensor::pool::buffer(inputs[1].len());
        cpu::stripe_update_grad_ya(g.data(), s[0], s[2], s[3], self.mu, self.off, &mut dya);
        let dxa: Vec<T> = dya.iter().map(|&v| -v).collect();
        vec![Some(g.clone()), Some(Tensor::from_vec(ys, dya)), Some(Tensor::from_vec(ys, dxa))]
    }
}

/// The gauge-equivariant coupling's link update as one op: `links (N, 2, H, W)`; on the
/// links of direction `mu` at the stripe of offset `off` (every 4th column for `mu = 0`,
/// row for `mu = 1`; `(N, A, B)` in the order of `gather_stripe`),
/// `theta -> (theta + s (y_a - x_a)) mod 2 pi` with `s = +1` for `mu = 0` and `-1` for
/// `mu = 1`; the other links unchanged.
///
/// # Panics
/// On shape mismatches, `mu > 1`, `off > 3`, or extents not divisible by 4.
#[track_caller]
pub fn u1_stripe_update<T: Float>(links: &Var<T>, ya: &Var<T>, xa: &Var<T>, mu: usize, off: usize) -> Var<T> {
    let s = links.shape();
    assert!(
        s.len() == 4 && s[1] == 2 && mu < 2 && off < 4 && s[2].is_multiple_of(4) && s[3].is_multiple_of(4),
        "u1_stripe_update: links {s:?}, mu {mu}, offset {off}"
    );
    let (a, b) = cpu::stripe_shape(mu, s[2], s[3]);
    assert!(
        ya.shape() == [s[0], a, b] && xa.shape() == [s[0], a, b],
        "u1_stripe_update: shape mismatch, y_a {:?}, x_a {:?} vs stripe ({}, {a}, {b})",
        ya.shape(),
        xa.shape(),
        s[0]
    );
    Var::apply_custom(&[links, ya, xa], U1StripeUpdate { mu, off })
}
