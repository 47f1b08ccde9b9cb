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

#[cfg(test)]
mod tests {
    //! The fused ops against the masked elementwise ops they replace: same values and
    //! same gradients (f64), both directions.
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// f64: the fused kernels evaluate the same formulas in another order.
    const TOL_F64: f64 = 1e-12;

    fn max_rel(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
        let scale = b.data().iter().fold(1e-300f64, |m, x| m.max(x.abs()));
        a.data().iter().zip(b.data()).map(|(x, y)| (x - y).abs() / scale).fold(0.0, f64::max)
    }

    #[test]
    fn fused_coupling_equals_the_composed_ops() {
        let mut rng = StdRng::seed_from_u64(11);
        let (n, h, w) = (3, 4, 6);
        for parity in 0..2 {
            let mask = Tensor::from_vec(&[h, w], (0..h * w).map(|i| ((i / w + i % w + parity) % 2) as f64).collect());
            let inv = mask.map(|m| 1.0 - m);
            for reverse in [false, true] {
                let x0 = Tensor::<f64>::randn(&[n, h, w], &mut rng);
                let st0 = Tensor::<f64>::randn(&[n, 2, h, w], &mut rng).map(|v| 0.7 * v);
                let r = Var::constant(Tensor::<f64>::randn(&[n, h, w], &mut rng));
                let r2 = Var::constant(Tensor::<f64>::randn(&[n], &mut rng));
                let run = |fused: bool| {
                    let (x, st) = (Var::param(x0.clone()), Var::param(st0.clone()));
                    let (y, logj) = if fused {
                        (affine_couple(&x, &st, &mask, reverse), masked_channel_sum(&st, 0, &inv))
                    } else {
                        let s = st.select(1, 0).mul_const(&inv);
                        let t = st.select(1, 1);
                        let active = if reverse {
                            x.sub(&t).mul(&s.neg().exp()).mul_const(&inv)
                        } else {
                            x.mul(&s.exp()).add(&t).mul_const(&inv)
                        };
                        (x.mul_const(&mask).add(&active), s.sum_axes(&[1, 2]))
                    };
                    let g = y.mul(&r).sum().add(&logj.mul(&r2).sum()).backward();
                    (y.value().clone(), logj.value().clone(), g.get(&x).unwrap().clone(), g.get(&st).unwrap().clone())
                };
                let (a, b) = (run(true), run(false));
                for (what, u, v) in [("y", &a.0, &b.0), ("log J", &a.1, &b.1), ("dx", &a.2, &b.2), ("dst", &a.3, &b.3)]
                {
                    let e = max_rel(u, v);
                    assert!(e <= TOL_F64, "parity {parity} reverse {reverse}: {what} differs by {e:e}");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "affine_couple: shape mismatch")]
    fn fused_coupling_rejects_mismatched_shapes() {
        let x = Var::constant(Tensor::<f64>::zeros(&[2, 4, 4]));
        let st = Var::constant(Tensor::<f64>::zeros(&[2, 3, 4, 4]));
        let _ = affine_couple(&x, &st, &Tensor::ones(&[4, 4]), false);
    }
}
