//! The affine coupling of arXiv:2101.08176 (section IV.B, after Dinh et al.
//! arXiv:1605.08803) as one op, and its log-Jacobian `sum_p m[p] st[n, 0, p]` as another
//! ([`masked_channel_sum`]). Forward and backward here, the CPU kernels in [`cpu`], the
//! CUDA half in `cuda.rs` with its kernels in `kernel.cu` (feature `cuda`).

pub mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
pub(crate) use cuda::module as cuda_module;

use latflow_tensor::{CustomOp, Float, Tensor, Var};

/// The coupling `y(x, st)` with a constant mask; `reverse` = the inverse direction.
struct AffineCouple<T: Float> {
    mask: Tensor<T>,
    reverse: bool,
}

impl<T: Float> CustomOp<T> for AffineCouple<T> {
    fn name(&self) -> &'static str {
        "affine_couple"
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let (x, st) = (inputs[0], inputs[1]);
        #[cfg(feature = "cuda")]
        if x.is_cuda() {
            return cuda::couple(x, st, &self.mask, self.reverse);
        }
        let mut y = latflow_tensor::pool::buffer(x.len());
        cpu::couple(x.data(), st.data(), self.mask.data(), self.reverse, &mut y);
        Tensor::from_vec(x.shape(), y)
    }

    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _y: &Tensor<T>,
        g: &Tensor<T>,
        _needs: &[bool],
    ) -> Vec<Option<Tensor<T>>> {
        // forward y = m x + (1-m)(x e^s + t): dx = g (m + (1-m) e^s), ds = g (1-m) x e^s,
        // dt = g (1-m); reverse y = m x + (1-m)(x - t) e^-s: dx = g (m + (1-m) e^-s),
        // ds = -g (1-m)(x - t) e^-s, dt = -g (1-m) e^-s
        let (x, st) = (inputs[0], inputs[1]);
        #[cfg(feature = "cuda")]
        if g.is_cuda() {
            let (dx, dst) = cuda::couple_grad(x, st, &self.mask, self.reverse, g);
            return vec![Some(dx), Some(dst)];
        }
        let mut dx = latflow_tensor::pool::buffer(x.len());
        let mut dst = latflow_tensor::pool::buffer(st.len());
        cpu::couple_grad(x.data(), st.data(), self.mask.data(), self.reverse, g.data(), &mut dx, &mut dst);
        vec![Some(Tensor::from_vec(x.shape(), dx)), Some(Tensor::from_vec(st.shape(), dst))]
    }
}

/// The affine coupling as one op: `x (N, S...)`, `st (N, 2, S...)` the net's scale
/// (channel 0) and shift (channel 1), `mask (S...)` the frozen sites (1).
///
/// Forward: `y = m x + (1 - m)(x e^s + t)`; reverse (`reverse = true`):
/// `y = m x + (1 - m)(x - t) e^{-s}`. The same values as the masked elementwise ops it
/// replaces (fewer passes, one tape node); its log-Jacobian is
/// `+- masked_channel_sum(st, 0, 1 - m)`.
///
/// ```
/// use latflow_flow::ops::LatticeOps;
/// use latflow_tensor::{Tensor, Var};
/// // one sample, two sites: site 0 frozen, site 1 active with s = ln 2, t = 1
/// let x = Var::constant(Tensor::from_vec(&[1, 2], vec![3.0f64, 5.0]));
/// let st = Var::constant(Tensor::from_vec(&[1, 2, 2], vec![0.0, 2f64.ln(), 0.0, 1.0]));
/// let mask = Tensor::from_vec(&[2], vec![1.0, 0.0]);
/// let y = x.affine_couple(&st, &mask, false);
/// assert!((y.value().data()[1] - 11.0).abs() < 1e-12); // 5 * 2 + 1
/// assert_eq!(y.value().data()[0], 3.0); // frozen
/// let back = y.affine_couple(&st, &mask, true); // (11 - 1) / 2
/// assert!((back.value().data()[1] - 5.0).abs() < 1e-12);
/// ```
///
/// # Panics
/// If `st` is not `(N, 2, S...)` or `mask` not `(S...)` for `x (N, S...)`.
#[track_caller]
pub fn affine_couple<T: Float>(x: &Var<T>, st: &Var<T>, mask: &Tensor<T>, reverse: bool) -> Var<T> {
    let (xs, ss) = (x.shape(), st.shape());
    assert!(
        !xs.is_empty()
            && ss.len() == xs.len() + 1
            && ss[0] == xs[0]
            && ss[1] == 2
            && ss[2..] == xs[1..]
            && mask.shape() == &xs[1..],
        "affine_couple: shape mismatch, x {xs:?}, st {ss:?}, mask {:?}",
        mask.shape()
    );
    Var::apply_custom(&[x, st], AffineCouple { mask: mask.clone(), reverse })
}

/// `sum_p m[p] st[n, channel, p]` with a constant mask.
struct MaskedChannelSum<T: Float> {
    channel: usize,
    mask: Tensor<T>,
}

impl<T: Float> CustomOp<T> for MaskedChannelSum<T> {
    fn name(&self) -> &'static str {
        "masked_channel_sum"
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let st = inputs[0];
        let s = st.shape();
        #[cfg(feature = "cuda")]
        if st.is_cuda() {
            return cuda::masked_channel_sum(st, &self.mask, self.channel);
        }
        let mut out = latflow_tensor::pool::buffer(s[0]);
        cpu::masked_channel_sum(st.data(), self.mask.data(), s[1], self.channel, &mut out);
        Tensor::from_vec(&[s[0]], out)
    }

    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _y: &Tensor<T>,
        g: &Tensor<T>,
        _needs: &[bool],
    ) -> Vec<Option<Tensor<T>>> {
        // d sum_p m[p] st[n, c, p] = m[p] on channel c, 0 on the others
        let st = inputs[0];
        #[cfg(feature = "cuda")]
        if g.is_cuda() {
            return vec![Some(cuda::masked_channel_sum_grad(g, &self.mask, st.shape(), self.channel))];
        }
        let mut d = latflow_tensor::pool::buffer(st.len());
        cpu::masked_channel_sum_grad(g.data(), self.mask.data(), st.shape()[1], self.channel, &mut d);
        vec![Some(Tensor::from_vec(st.shape(), d))]
    }
}

/// `out[n] = sum_p m[p] st[n, channel, p]` for `st (N, C, S...)` and a constant
/// `mask (S...)`, shape `(N,)`: the affine coupling's log-Jacobian. Derivative: `m` on
/// channel `channel`, 0 elsewhere.
///
/// # Panics
/// On shape mismatches or `channel >= C`.
#[track_caller]
pub fn masked_channel_sum<T: Float>(st: &Var<T>, channel: usize, mask: &Tensor<T>) -> Var<T> {
    let s = st.shape();
    assert!(
        s.len() >= 2 && channel < s[1] && mask.shape() == &s[2..],
        "masked_channel_sum: shape mismatch, {s:?} channel {channel} vs mask {:?}",
        mask.shape()
    );
    Var::apply_custom(&[st], MaskedChannelSum { channel, mask: mask.clone() })
}
