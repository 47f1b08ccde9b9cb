//! Elementwise functions and their derivatives: each op is a function and its
//! derivative, nothing else. The tape stores which one ran; `crate::op` applies
//! the chain rule.

use crate::{Float, Tensor};
use rayon::prelude::*;

/// Elementwise loops are split across rayon's threads from this many elements on.
pub const PAR_MIN_ELEMS: usize = 1 << 17;
/// Elements per parallel task.
const PAR_CHUNK: usize = 1 << 13;

/// Runs `f` on matching chunks of one input and one output, in parallel when large.
pub fn par_map1<T: Float>(x: &[T], y: &mut [T], f: impl Fn(&[T], &mut [T]) + Sync) {
    if y.len() >= PAR_MIN_ELEMS {
        y.par_chunks_mut(PAR_CHUNK).zip(x.par_chunks(PAR_CHUNK)).for_each(|(yc, xc)| f(xc, yc));
    } else {
        f(x, y)
    }
}

/// Runs `f` on matching chunks of three inputs and one output, in parallel when large.
pub fn par_map3<T: Float>(a: &[T], b: &[T], c: &[T], y: &mut [T], f: impl Fn(&[T], &[T], &[T], &mut [T]) + Sync) {
    if y.len() >= PAR_MIN_ELEMS {
        y.par_chunks_mut(PAR_CHUNK)
            .zip(a.par_chunks(PAR_CHUNK))
            .zip(b.par_chunks(PAR_CHUNK).zip(c.par_chunks(PAR_CHUNK)))
            .for_each(|((yc, ac), (bc, cc))| f(ac, bc, cc, yc));
    } else {
        f(a, b, c, y)
    }
}

/// A one-input elementwise function `y = f(x)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary<T> {
    /// y = -x
    Neg,
    /// y = x + c
    AddScalar(T),
    /// y = c x
    MulScalar(T),
    /// y = e^x
    Exp,
    /// y = ln x
    Log,
    /// y = tanh x
    Tanh,
    /// y = x for x > 0, slope * x otherwise
    LeakyRelu(T),
    /// y = sin x
    Sin,
    /// y = cos x
    Cos,
    /// y = tan x
    Tan,
    /// y = atan x
    Atan,
    /// y = x^n
    Powi(i32),
    /// y = x mod m, in [0, m)
    RemEuclid(T),
}

impl<T: Float> Unary<T> {
    /// The op's code in the CUDA kernels (`common.cuh`'s `#define U_*`, checked against it
    /// by a test) and its parameter as f32 (0 when it has none).
    pub fn kernel_code(self) -> (i32, f32) {
        let p = |c: T| c.to_f64() as f32;
        match self {
            Unary::Neg => (0, 0.0),
            Unary::AddScalar(c) => (1, p(c)),
            Unary::MulScalar(c) => (2, p(c)),
            Unary::Exp => (3, 0.0),
            Unary::Log => (4, 0.0),
            Unary::Tanh => (5, 0.0),
            Unary::LeakyRelu(s) => (6, p(s)),
            Unary::Sin => (7, 0.0),
            Unary::Cos => (8, 0.0),
            Unary::Tan => (9, 0.0),
            Unary::Atan => (10, 0.0),
            Unary::Powi(n) => (11, n as f32),
            Unary::RemEuclid(m) => (12, p(m)),
        }
    }

    /// The function.
    #[inline(always)]
    pub fn f(self, x: T) -> T {
        match self {
            Unary::Neg => -x,
            Unary::AddScalar(c) => x + c,
            Unary::MulScalar(c) => c * x,
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Tanh => x.tanh(),
            Unary::LeakyRelu(s) => {
                if x > T::ZERO {
                    x
                } else {
                    s * x
                }
            }
            Unary::Sin => x.sin(),
            Unary::Cos => x.cos(),
            Unary::Tan => x.tan(),
            Unary::Atan => x.atan(),
            Unary::Powi(n) => x.powi(n),
            Unary::RemEuclid(m) => x.rem_euclid(m),
        }
    }

    /// The derivative dy/dx, given the input `x` and the output `y = f(x)`.
    #[inline(always)]
    pub fn df(self, x: T, y: T) -> T {
        match self {
            // d(-x) = -1
            Unary::Neg => -T::ONE,
            // d(x + c) = 1
            Unary::AddScalar(_) => T::ONE,
            // d(c x) = c
            Unary::MulScalar(c) => c,
            // d e^x = e^x = y
            Unary::Exp => y,
            // d ln x = 1 / x
            Unary::Log => T::ONE / x,
            // d tanh = 1 - y^2
            Unary::Tanh => T::ONE - y * y,
            // d leaky_relu = 1 (x > 0), slope (x <= 0)
            Unary::LeakyRelu(s) => {
                if x > T::ZERO {
                    T::ONE
                } else {
                    s
                }
            }
            // d sin = cos x
            Unary::Sin => x.cos(),
            // d cos = -sin x
            Unary::Cos => -x.sin(),
            // d tan = 1 + tan^2 = 1 + y^2
            Unary::Tan => T::ONE + y * y,
            // d atan = 1 / (1 + x^2)
            Unary::Atan => T::ONE / (T::ONE + x * x),
            // d x^n = n x^(n-1)  (and d x^0 = 0, also at x = 0 where 0 * x^-1 is NaN)
            Unary::Powi(0) => T::ZERO,
            Unary::Powi(n) => T::from_f64(n as f64) * x.powi(n - 1),
            // d (x mod m) = 1 (away from the jumps)
            Unary::RemEuclid(_) => T::ONE,
        }
    }

    /// `y[i] = f(x[i])` over slices, the match hoisted out of the loop so each arm is a
    /// tight (auto-vectorizable) loop.
    ///
    /// # Panics
    /// If the lengths differ.
    #[track_caller]
    pub fn apply(self, x: &[T], y: &mut [T]) {
        assert_eq!(x.len(), y.len(), "Unary::apply: input {} vs output {}", x.len(), y.len());
        par_map1(x, y, |x, y| self.apply_serial(x, y));
    }

    fn apply_serial(self, x: &[T], y: &mut [T]) {
        macro_rules! each {
            (|$v:ident| $e:expr) => {
                for (o, &$v) in y.iter_mut().zip(x) {
                    *o = $e;
                }
            };
        }
        match self {
            Unary::Neg => each!(|v| -v),
            Unary::AddScalar(c) => each!(|v| v + c),
            Unary::MulScalar(c) => each!(|v| c * v),
            Unary::LeakyRelu(s) => each!(|v| if v > T::ZERO { v } else { s * v }),
            Unary::Powi(2) => each!(|v| v * v),
            Unary::Exp => T::exp_slice(x, y),
            Unary::Tanh => T::tanh_slice(x, y),
            Unary::Sin => T::sin_slice(x, y),
            Unary::Cos => T::cos_slice(x, y),
            Unary::Tan => T::tan_slice(x, y),
            Unary::Atan => T::atan_slice(x, y),
            Unary::Log => T::ln_slice(x, y),
            f => each!(|v| f.f(v)),
        }
    }

    /// `out[i] = g[i] * f'(x[i])` over slices (the backward pass), given `y = f(x)`.
    ///
    /// # Panics
    /// If the lengths differ.
    #[track_caller]
    pub fn apply_grad(self, x: &[T], y: &[T], g: &[T], out: &mut [T]) {
        let n = out.len();
        assert!(x.len() == n && y.len() == n && g.len() == n, "Unary::apply_grad: lengths differ");
        par_map3(x, y, g, out, |x, y, g, out| self.apply_grad_serial(x, y, g, out));
    }

    fn apply_grad_serial(self, x: &[T], y: &[T], g: &[T], out: &mut [T]) {
        let n = out.len();
        macro_rules! each {
            (|$x:ident, $y:ident, $g:ident| $e:expr) => {
                for i in 0..n {
                    let ($x, $y, $g) = (x[i], y[i], g[i]);
                    out[i] = $e;
                }
            };
        }
        match self {
            Unary::Neg => each!(|_x, _y, g| -g),
            Unary::AddScalar(_) | Unary::RemEuclid(_) => out.copy_from_slice(g),
            Unary::MulScalar(c) => each!(|_x, _y, g| c * g),
            Unary::Exp => each!(|_x, y, g| g * y),
            Unary::Tanh => each!(|_x, y, g| g * (T::ONE - y * y)),
            Unary::LeakyRelu(s) => each!(|x, _y, g| if x > T::ZERO { g } else { s * g }),
            Unary::Sin => {
                // g cos x, with the slice cos
                T::cos_slice(x, out);
                out.iter_mut().zip(g).for_each(|(o, &g)| *o = g * *o);
            }
            Unary::Cos => {
                // -g sin x
                T::sin_slice(x, out);
                out.iter_mut().zip(g).for_each(|(o, &g)| *o = -(g * *o));
            }
            f => each!(|x, y, g| g * f.df(x, y)),
        }
    }

    /// Whether [`Unary::grad_from_output`] applies: `LeakyRelu(s)` with `s > 0` (then
    /// `y > 0` exactly where `x > 0`) and `Tanh` (`1 - y^2`).
    pub fn grad_from_output_ok(self) -> bool {
        match self {
            Unary::LeakyRelu(s) => s > T::ZERO,
            Unary::Tanh => true,
            _ => false,
        }
    }

    /// `out[i] = g[i] * f'(x[i])` from the outputs `y = f(x)` alone (for the fused
    /// [`crate::Var::conv2d_act`]).
    ///
    /// # Panics
    /// If the lengths differ or [`Unary::grad_from_output_ok`] is false.
    #[track_caller]
    pub fn grad_from_output(self, y: &[T], g: &[T], out: &mut [T]) {
        assert!(y.len() == out.len() && g.len() == out.len(), "Unary::grad_from_output: lengths differ");
        match self {
            // d leaky_relu = 1 where y > 0 (x > 0 for a positive slope), slope elsewhere
            Unary::LeakyRelu(s) if s > T::ZERO => {
                for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
                    *o = if y > T::ZERO { g } else { s * g };
                }
            }
            // d tanh = 1 - y^2
            Unary::Tanh => {
                for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
                    *o = g * (T::ONE - y * y);
                }
            }
            f => panic!("Unary::grad_from_output: {f:?} has no derivative in terms of its output"),
        }
    }

    /// `f` applied to an owned buffer, in place (while it is still in cache): directly for
    /// `LeakyRelu`, else through a pooled scratch copy ([`crate::pool`]). Used by
    /// [`crate::Var::conv2d_act`].
    pub fn apply_owned(self, mut x: Vec<T>) -> Vec<T> {
        match self {
            Unary::LeakyRelu(s) => {
                for v in x.iter_mut() {
                    if *v <= T::ZERO {
                        *v = s * *v;
                    }
                }
                x
            }
            f => {
                let mut scratch = crate::pool::buffer(x.len());
                scratch.copy_from_slice(&x);
                f.apply(&scratch, &mut x);
                crate::pool::recycle(scratch);
                x
            }
        }
    }

    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Unary::Neg => "neg",
            Unary::AddScalar(_) => "add_scalar",
            Unary::MulScalar(_) => "mul_scalar",
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Tanh => "tanh",
            Unary::LeakyRelu(_) => "leaky_relu",
            Unary::Sin => "sin",
            Unary::Cos => "cos",
            Unary::Tan => "tan",
            Unary::Atan => "atan",
            Unary::Powi(_) => "powi",
            Unary::RemEuclid(_) => "rem_euclid",
        }
    }
}

/// A two-input elementwise function `y = f(a, b)` on equal shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
}

impl Binary {
    /// The op's code in the CUDA kernels (`elementwise.cu`'s `#define B_*`, checked
    /// against it by a test).
    pub fn kernel_code(self) -> i32 {
        match self {
            Binary::Add => 0,
            Binary::Sub => 1,
            Binary::Mul => 2,
            Binary::Div => 3,
        }
    }

    /// The function.
    #[inline(always)]
    pub fn f<T: Float>(self, a: T, b: T) -> T {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
        }
    }

    /// The partial derivatives (dy/da, dy/db) at (a, b).
    #[inline(always)]
    pub fn df<T: Float>(self, a: T, b: T) -> (T, T) {
        match self {
            // d(a + b) = (1, 1)
            Binary::Add => (T::ONE, T::ONE),
            // d(a - b) = (1, -1)
            Binary::Sub => (T::ONE, -T::ONE),
            // d(a b) = (b, a)
            Binary::Mul => (b, a),
            // d(a / b) = (1 / b, -a / b^2)
            Binary::Div => (T::ONE / b, -a / (b * b)),
        }
    }

    /// `y[i] = f(a[i], b[i])` over slices (parallel when large).
    ///
    /// # Panics
    /// If the lengths differ.
    #[track_caller]
    pub fn apply<T: Float>(self, a: &[T], b: &[T], y: &mut [T]) {
        assert!(a.len() == y.len() && b.len() == y.len(), "Binary::apply: lengths differ");
        par_map3(a, b, b, y, |a, b, _, y| {
            macro_rules! each {
                ($op:tt) => {
                    for ((o, &a), &b) in y.iter_mut().zip(a).zip(b) {
                        *o = a $op b;
                    }
                };
            }
            match self {
                Binary::Add => each!(+),
                Binary::Sub => each!(-),
                Binary::Mul => each!(*),
                Binary::Div => each!(/),
            }
        });
    }

    /// The gradient `g * df/da` into `ga` (parallel when large).
    pub fn grad_a<T: Float>(self, a: &[T], b: &[T], g: &[T], ga: &mut [T]) {
        par_map3(a, b, g, ga, |_a, b, g, out| match self {
            Binary::Add => out.copy_from_slice(g),
            Binary::Sub => out.copy_from_slice(g),
            Binary::Mul => out.iter_mut().zip(g).zip(b).for_each(|((o, &g), &b)| *o = g * b),
            Binary::Div => out.iter_mut().zip(g).zip(b).for_each(|((o, &g), &b)| *o = g / b),
        });
    }

    /// The gradient `g * df/db` into `gb` (parallel when large).
    pub fn grad_b<T: Float>(self, a: &[T], b: &[T], g: &[T], gb: &mut [T]) {
        par_map3(a, b, g, gb, |a, b, g, out| match self {
            Binary::Add => out.copy_from_slice(g),
            Binary::Sub => out.iter_mut().zip(g).for_each(|(o, &g)| *o = -g),
            Binary::Mul => out.iter_mut().zip(g).zip(a).for_each(|((o, &g), &a)| *o = g * a),
            Binary::Div => {
                for i in 0..out.len() {
                    out[i] = -g[i] * a[i] / (b[i] * b[i]);
                }
            }
        });
    }

    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Sub => "sub",
            Binary::Mul => "mul",
            Binary::Div => "div",
        }
    }
}

/// `x * m` with the mask `m` repeated over `x`'s leading axes (`x.len()` a multiple of
/// `m.len()`), host tensors; parallel over repeats when large.
pub(crate) fn times_mask<T: Float>(x: &Tensor<T>, m: &Tensor<T>) -> Tensor<T> {
    let (xd, md) = (x.data(), m.data());
    let mut out = crate::pool::buffer(xd.len());
    let k = md.len().max(1);
    let body = |(o, xs): (&mut [T], &[T])| {
        for ((o, &x), &m) in o.iter_mut().zip(xs).zip(md) {
            *o = x * m;
        }
    };
    if xd.len() >= PAR_MIN_ELEMS {
        out.par_chunks_mut(k).zip(xd.par_chunks(k)).for_each(body);
    } else {
        out.chunks_mut(k).zip(xd.chunks(k)).for_each(body);
    }
    Tensor::from_vec(x.shape(), out)
}

#[cfg(test)]
mod tests {
    //! The op codes are written twice, here and in the CUDA sources: the `#define`s must
    //! match [`Unary::kernel_code`] and [`Binary::kernel_code`] (no GPU needed).
    use super::*;
    use std::collections::HashMap;

    /// `name -> value` of every `#define {prefix}NAME value` with an integer value.
    fn defines(src: &str, prefix: &str) -> HashMap<String, i32> {
        src.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                match (w.next(), w.next(), w.next()) {
                    (Some("#define"), Some(name), Some(v)) if name.starts_with(prefix) => {
                        Some((name.to_string(), v.parse().ok()?))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// The CUDA name of each unary op (a new variant fails to compile here until named).
    fn unary_name(u: Unary<f64>) -> &'static str {
        match u {
            Unary::Neg => "U_NEG",
            Unary::AddScalar(_) => "U_ADD_SCALAR",
            Unary::MulScalar(_) => "U_MUL_SCALAR",
            Unary::Exp => "U_EXP",
            Unary::Log => "U_LOG",
            Unary::Tanh => "U_TANH",
            Unary::LeakyRelu(_) => "U_LEAKY",
            Unary::Sin => "U_SIN",
            Unary::Cos => "U_COS",
            Unary::Tan => "U_TAN",
            Unary::Atan => "U_ATAN",
            Unary::Powi(_) => "U_POWI",
            Unary::RemEuclid(_) => "U_REM_EUCLID",
        }
    }

    #[test]
    fn unary_codes_match_common_cuh() {
        let cuda = defines(include_str!("../../cuda-kernels/src/cu/common.cuh"), "U_");
        let all = [
            Unary::Neg,
            Unary::AddScalar(0.5),
            Unary::MulScalar(2.0),
            Unary::Exp,
            Unary::Log,
            Unary::Tanh,
            Unary::LeakyRelu(0.01),
            Unary::Sin,
            Unary::Cos,
            Unary::Tan,
            Unary::Atan,
            Unary::Powi(3),
            Unary::RemEuclid(1.0),
        ];
        assert_eq!(cuda.len(), all.len(), "common.cuh defines {cuda:?}, Rust has {} unary ops", all.len());
        for u in all {
            let name = unary_name(u);
            assert_eq!(cuda.get(name), Some(&u.kernel_code().0), "{u:?}: {name} in common.cuh");
        }
    }

    #[test]
    fn binary_codes_match_elementwise_cu() {
        let cuda = defines(include_str!("../../cuda-kernels/src/cu/elementwise.cu"), "B_");
        let all = [(Binary::Add, "B_ADD"), (Binary::Sub, "B_SUB"), (Binary::Mul, "B_MUL"), (Binary::Div, "B_DIV")];
        assert_eq!(cuda.len(), all.len(), "elementwise.cu defines {cuda:?}");
        for (b, name) in all {
            assert_eq!(cuda.get(name), Some(&b.kernel_code()), "{b:?}: {name} in elementwise.cu");
        }
    }
}
