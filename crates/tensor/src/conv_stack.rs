//! A stack of circular convolutions, `h_{l+1} = act_l(conv(h_l, w_l) + b_l)`, run as one
//! tape node with its activations held in the FFT kernels' samples-as-lanes layout
//! (`(n / 16, C, 64, 16)`: 16 samples as the lanes of each site vector, see
//! [`crate::kernels::conv2d_fft`]) from the stack's input to its output.
//!
//! Why: in a training shard (64 samples on one thread) the per-layer ops keep every
//! activation in NCHW, so each FFT pass transposes its 16x16 blocks of samples and sites on
//! every load and store of a plane (256 shuffles per plane of 16 samples, about as costly as
//! the transforms), and the direct kernels permute lanes to shift a tap. Held in the lanes
//! layout, a plane of 16 samples is 64 contiguous vectors and a tap's shift is another
//! vector: every conv pass measured 1.2-1.6x faster at batch 64 with its data in cache
//! (`cargo bench --bench conv2d_layout`, `docs/perf-conv2d.md`). Only the stack's input (1-2
//! channels) and output (2-3 channels) and their gradients are transposed, once each. In a
//! training step the gain is smaller, because a shard's activations (~5 MB) come from L3
//! in the backward pass whatever their layout: phi^4 at batch 1024 1.04x on two threads
//! (1.10x on one), U(1) 1.02x (AMD Zen 4, 2026-12-02; `docs/perf-conv2d.md`).
//!
//! Values: the forward pass gives the per-layer ops' values bit for bit (the same FFT
//! arithmetic; the direct lanes kernel sums in the NCHW kernel's order where a layer has at
//! least as many outputs as inputs, and the stacks that take this path start with 1 -> 8 or
//! 2 -> 8). The backward pass runs every layer through the fused FFT pass
//! ([`crate::kernels::conv2d_fft::backward_fused_lanes`]): bit for bit the per-layer ops'
//! where they take that pass too (`conv2d::fft_fused_preferred`: every layer of the U(1)
//! nets); phi^4's 8 -> 2 and 1 -> 8, which the per-layer ops give to the direct kernels, agree
//! with them to f32 rounding (in the lanes layout the FFT pass measured 1.7x the direct
//! one for 1 -> 8 and even for 8 -> 2, `cargo bench --bench conv2d_layout`).
//!
//! When: [`lanes_applies`] — f32 on the CPU, inside a rayon worker (a training shard),
//! AVX-512 and the FFT kernels available, an 8x8 lattice, 3x3 kernels, a batch that is a
//! multiple of 16 and at least [`LANES_MIN_BATCH`] and `conv2d::fft_min_batch`, every
//! forward pass one the per-layer ops would give to the FFT kernels or to the direct AVX-512
//! kernels with at least as many outputs as inputs, LeakyReLU (positive slope) or tanh
//! activations, and a parameter that needs its gradient (a training step; flow-HMC's
//! input-only gradients keep the per-layer ops). `LATFLOW_NO_LANES=1` turns it off (A/B).

use crate::elementwise::Unary;
use crate::{Float, Var};

/// Smallest batch (shard) the lanes path takes: 64, where it was measured (shards of 64 at
/// training batch 1024 on AMD Zen 4). Smaller shards (the demo's batch 64 runs two shards
/// of 32) keep the per-layer ops, and their bits.
pub const LANES_MIN_BATCH: usize = 64;

/// Whether [`conv_stack_lanes`] takes `x` through the convolutions with weights and biases
/// `p = [w_0, b_0, w_1, b_1, ...]` and activations `acts` (one per convolution): see the
/// module docs.
pub fn lanes_applies<T: Float>(x: &Var<T>, p: &[Var<T>], acts: &[Option<Unary<T>>]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        imp::applies(x, p, acts)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, p, acts);
        false
    }
}

/// The stack as one tape node (see the module docs); call only where [`lanes_applies`]
/// holds.
///
/// # Panics
/// Where [`lanes_applies`] is false.
pub fn conv_stack_lanes<T: Float>(x: &Var<T>, p: &[Var<T>], acts: &[Option<Unary<T>>]) -> Var<T> {
    assert!(lanes_applies(x, p, acts), "conv_stack_lanes: the lanes path does not apply here");
    #[cfg(target_arch = "x86_64")]
    {
        imp::apply(x, p, acts)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!()
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::any::TypeId;
    use std::cell::RefCell;

    use crate::elementwise::Unary;
    use crate::kernels::conv2d::{self, cast, cast_mut, Backend};
    use crate::kernels::conv2d_avx512::{self, lanes, ActGrad};
    use crate::kernels::conv2d_fft;
    use crate::kernels::conv2d_shape::{Conv2dShape, Pass};
    use crate::{CustomOp, Float, Tensor, Var};

    /// Lanes of a vector: samples per group.
    const L: usize = 16;

    /// One convolution of the stack: its shape, whether its forward pass takes the FFT kernel
    /// (else the direct lanes kernel), its activation.
    struct Layer {
        s: Conv2dShape,
        fft: bool,
        act: Option<ActGrad>,
    }

    pub(super) fn applies<T: Float>(x: &Var<T>, p: &[Var<T>], acts: &[Option<Unary<T>>]) -> bool {
        layers(x, p, acts).is_some()
    }

    /// The stack's layers where the lanes path applies (see the module docs), else `None`.
    fn layers<T: Float>(x: &Var<T>, p: &[Var<T>], acts: &[Option<Unary<T>>]) -> Option<Vec<Layer>> {
        static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *OFF.get_or_init(|| std::env::var_os("LATFLOW_NO_LANES").is_some())
            || TypeId::of::<T>() != TypeId::of::<f32>()
            || x.value().is_cuda()
            || rayon::current_thread_index().is_none()
            || !conv2d_avx512::available()
            || !conv2d_fft::available()
            || p.is_empty()
            || p.len() != 2 * acts.len()
            || !p.iter().any(|v| v.requires_grad())
        {
            return None;
        }
        let xs = x.shape();
        if xs.len() != 4
            || xs[2] != 8
            || xs[3] != 8
            || !xs[0].is_multiple_of(L)
            || xs[0] < super::LANES_MIN_BATCH.max(conv2d::fft_min_batch())
        {
            return None;
        }
        let mut c = xs[1];
        let mut out = Vec::new();
        for (wb, act) in p.chunks_exact(2).zip(acts) {
            let (ws, bs) = (wb[0].shape(), wb[1].shape());
            if ws.len() != 4
                || ws[1] != c
                || ws[2] != 3
                || ws[3] != 3
                || bs != [ws[0]]
                || wb[0].value().is_cuda()
                || wb[1].value().is_cuda()
            {
                return None;
            }
            let act = match *act {
                None => None,
                Some(Unary::Tanh) => Some(ActGrad::Tanh),
                // exact: T is f32 here
                Some(Unary::LeakyRelu(slope)) if slope > T::ZERO => Some(ActGrad::Leaky(slope.to_f64() as f32)),
                _ => return None,
            };
            let s = Conv2dShape { n: xs[0], cin: c, cout: ws[0], h: 8, w: 8, k: 3 };
            // the FFT layers, and the direct ones whose lanes kernel sums in the NCHW kernel's
            // order (at least as many outputs as inputs: the NCHW kernel rolls the outputs
            // otherwise), so that the forward values stay the per-layer ops' bit for bit
            let fft = match conv2d::auto_backend_for::<f32>(Pass::Forward, &s) {
                Backend::Fft => true,
                Backend::Avx512 if s.cout >= s.cin => false,
                _ => return None,
            };
            out.push(Layer { s, fft, act });
            c = ws[0];
        }
        Some(out)
    }

    pub(super) fn apply<T: Float>(x: &Var<T>, p: &[Var<T>], acts: &[Option<Unary<T>>]) -> Var<T> {
        let layers = layers(x, p, acts).expect("checked by lanes_applies");
        let mut inputs = vec![x];
        inputs.extend(p.iter());
        Var::apply_custom(&inputs, ConvStackLanes { layers, kept: RefCell::new(Vec::new()) })
    }

    /// The op: its layers, and (from the forward pass to the backward pass) the stack's input
    /// and every layer's output in the lanes layout.
    struct ConvStackLanes {
        layers: Vec<Layer>,
        kept: RefCell<Vec<Vec<f32>>>,
    }

    impl Drop for ConvStackLanes {
        fn drop(&mut self) {
            for v in self.kept.get_mut().drain(..) {
                crate::pool::recycle(v);
            }
        }
    }

    /// A tensor's values as `f32` (T is f32 wherever the op runs: `layers` checks it).
    fn f32s<T: Float>(t: &Tensor<T>) -> &[f32] {
        cast(t.data()).expect("conv_stack_lanes: f32 only")
    }

    /// A pool buffer of `T = f32` written as `f32`, returned as a tensor.
    fn tensor_from<T: Float>(shape: &[usize], fill: impl FnOnce(&mut [f32])) -> Tensor<T> {
        let mut v = crate::pool::buffer::<T>(shape.iter().product());
        fill(cast_mut(&mut v).expect("conv_stack_lanes: f32 only"));
        Tensor::from_vec(shape, v)
    }

    impl<T: Float> CustomOp<T> for ConvStackLanes {
        fn name(&self) -> &'static str {
            "conv_stack_lanes"
        }

        fn forward(&self, inputs: &[&Tensor<T>]) -> Tensor<T> {
            let (first, last) = (self.layers[0].s, self.layers[self.layers.len() - 1].s);
            let mut h = crate::pool::buffer::<f32>(first.input_len());
            conv2d_fft::transpose_lanes(f32s(inputs[0]), first.n, first.cin, false, &mut h);
            let mut kept = vec![h];
            for (l, Layer { s, fft, act }) in self.layers.iter().enumerate() {
                let (w, b) = (f32s(inputs[1 + 2 * l]), f32s(inputs[2 + 2 * l]));
                let mut y = crate::pool::buffer::<f32>(s.output_len());
                let leaky = match act {
                    Some(ActGrad::Leaky(slope)) => Some(*slope),
                    _ => None,
                };
                let x = kept.last().expect("the input");
                if *fft {
                    conv2d_fft::forward_lanes(x, w, Some(b), *s, &mut y, leaky);
                } else {
                    lanes::forward_lanes(x, w, Some(b), *s, &mut y, leaky);
                }
                if let Some(ActGrad::Tanh) = act {
                    // elementwise: the values of the per-layer op's `Unary::Tanh` pass
                    y = Unary::<f32>::Tanh.apply_owned(y);
                }
                kept.push(y);
            }
            let out = tensor_from::<T>(&[last.n, last.cout, 8, 8], |o| {
                conv2d_fft::transpose_lanes(kept.last().expect("the output"), last.n, last.cout, true, o)
            });
            *self.kept.borrow_mut() = kept;
            out
        }

        fn backward(
            &self,
            inputs: &[&Tensor<T>],
            _output: &Tensor<T>,
            grad: &Tensor<T>,
            needs_grad: &[bool],
        ) -> Vec<Option<Tensor<T>>> {
            // per layer y = act(conv(x, w) + b): dz = g act'(y), dx = conv^T(dz, w),
            // dw[o, c, t] = sum dz[o] x[c](shifted by t), db[o] = sum dz[o]; from the last layer
            // to the first, each layer's dx the previous layer's g
            let kept = self.kept.borrow();
            assert_eq!(kept.len(), self.layers.len() + 1, "conv_stack_lanes: backward before forward");
            let (first, last) = (self.layers[0].s, self.layers[self.layers.len() - 1].s);
            let mut g = crate::pool::buffer::<f32>(last.output_len());
            conv2d_fft::transpose_lanes(f32s(grad), last.n, last.cout, false, &mut g);
            let mut out: Vec<Option<Tensor<T>>> = (0..inputs.len()).map(|_| None).collect();
            for (l, Layer { s, act, .. }) in self.layers.iter().enumerate().rev() {
                // dx of layer l feeds layer l - 1's gradients and the input's
                let want_dx = needs_grad[..1 + 2 * l].iter().any(|&n| n);
                let mut dx = want_dx.then(|| crate::pool::buffer::<f32>(s.input_len()));
                let (mut dw, mut db) = (crate::pool::buffer::<T>(s.weight_len()), crate::pool::buffer::<T>(s.cout));
                // every layer through the fused FFT pass: the per-layer ops' own choice for the
                // U(1) nets' layers; for phi^4's 8 -> 2 and 1 -> 8 (direct kernels per layer)
                // the lanes FFT pass measured even and 1.7x a direct lanes pass at 64 samples
                // (docs/perf-conv2d.md, "A training shard held in the lanes layout")
                conv2d_fft::backward_fused_lanes(
                    &g,
                    &kept[l + 1],
                    *act,
                    &kept[l],
                    f32s(inputs[1 + 2 * l]),
                    *s,
                    dx.as_deref_mut(),
                    cast_mut(&mut dw).expect("f32"),
                    Some(cast_mut(&mut db).expect("f32")),
                );
                out[1 + 2 * l] = needs_grad[1 + 2 * l].then(|| Tensor::from_vec(&[s.cout, s.cin, 3, 3], dw));
                out[2 + 2 * l] = needs_grad[2 + 2 * l].then(|| Tensor::from_vec(&[s.cout], db));
                match dx {
                    Some(dx) => crate::pool::recycle(std::mem::replace(&mut g, dx)),
                    // nothing below this layer needs a gradient
                    None => break,
                }
            }
            if needs_grad[0] {
                out[0] = Some(tensor_from::<T>(&[first.n, first.cin, 8, 8], |o| {
                    conv2d_fft::transpose_lanes(&g, first.n, first.cin, true, o)
                }));
            }
            crate::pool::recycle(g);
            out
        }
    }
}
