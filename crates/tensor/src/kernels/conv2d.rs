//! conv2d with circular (periodic) padding: NCHW, stride 1, odd square kernel `k`,
//! padding `k/2` wrapping around the lattice. Same function as PyTorch
//! `Conv2d(padding=k//2, padding_mode="circular")`, i.e. a cross-correlation:
//!
//! `y[n,o,i,j] = b[o] + sum_{c,a,e} w[o,c,a,e] x[n,c,(i+a-p) mod H,(j+e-p) mod W]`, p = k/2.
//!
//! Derivatives (same periodic indexing):
//! `dx[n,c,i,j] = sum_{o,a,e} w[o,c,a,e] dy[n,o,(i-a+p) mod H,(j-e+p) mod W]`,
//! `dw[o,c,a,e] = sum_{n,i,j} dy[n,o,i,j] x[n,c,(i+a-p) mod H,(j+e-p) mod W]`,
//! `db[o] = sum_{n,i,j} dy[n,o,i,j]`.
//!
//! The entry points dispatch to the fastest kernel for the shape; [`reference`] holds
//! the plain scalar loops every other kernel is tested against.

use crate::Float;

/// Shape of one conv2d call: batch `n`, channels `cin -> cout`, lattice `h x w`,
/// kernel `k x k` (odd).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Lattice extent along the first spatial axis.
    pub h: usize,
    /// Lattice extent along the second spatial axis.
    pub w: usize,
    /// Kernel size (odd).
    pub k: usize,
}

impl Conv2dShape {
    /// Elements of the input `(n, cin, h, w)`.
    pub fn input_len(&self) -> usize {
        self.n * self.cin * self.h * self.w
    }
    /// Elements of the output `(n, cout, h, w)`.
    pub fn output_len(&self) -> usize {
        self.n * self.cout * self.h * self.w
    }
    /// Elements of the weight `(cout, cin, k, k)`.
    pub fn weight_len(&self) -> usize {
        self.cout * self.cin * self.k * self.k
    }
    /// Multiply-adds of one forward pass (each backward pass costs the same).
    pub fn macs(&self) -> usize {
        self.n * self.cout * self.cin * self.k * self.k * self.h * self.w
    }
    /// Panics unless the kernel is odd and no wider than the lattice, and the slices
    /// have the lengths the shape implies.
    #[track_caller]
    pub(crate) fn check(&self, x: usize, w: usize, y: usize) {
        assert!(self.k % 2 == 1, "conv2d: kernel size {} must be odd", self.k);
        assert!(
            self.k <= self.h && self.k <= self.w,
            "conv2d: kernel {}x{} is wider than the {}x{} lattice",
            self.k,
            self.k,
            self.h,
            self.w
        );
        assert_eq!(x, self.input_len(), "conv2d: input length for {self:?}");
        assert_eq!(w, self.weight_len(), "conv2d: weight length for {self:?}");
        assert_eq!(y, self.output_len(), "conv2d: output length for {self:?}");
    }
}

/// Forward pass into `y` (overwritten). `b`, when given, has `cout` entries.
#[track_caller]
pub fn forward<T: Float>(x: &[T], w: &[T], b: Option<&[T]>, s: Conv2dShape, y: &mut [T]) {
    s.check(x.len(), w.len(), y.len());
    reference::forward(x, w, b, s, y);
}

/// Gradient with respect to the input, into `dx` (overwritten).
#[track_caller]
pub fn backward_input<T: Float>(dy: &[T], w: &[T], s: Conv2dShape, dx: &mut [T]) {
    s.check(dx.len(), w.len(), dy.len());
    reference::backward_input(dy, w, s, dx);
}

/// Gradients with respect to weight and (optionally) bias, into `dw` and `db`
/// (overwritten).
#[track_caller]
pub fn backward_weight<T: Float>(dy: &[T], x: &[T], s: Conv2dShape, dw: &mut [T], db: Option<&mut [T]>) {
    s.check(x.len(), dw.len(), dy.len());
    reference::backward_weight(dy, x, s, dw, db);
}

/// Plain scalar loops: the definition every optimized kernel is tested against.
pub mod reference {
    use super::Conv2dShape;
    use crate::Float;

    /// Scalar forward pass (see the module docs for the formula).
    pub fn forward<T: Float>(x: &[T], w: &[T], b: Option<&[T]>, s: Conv2dShape, y: &mut [T]) {
        let (hw, p, k) = (s.h * s.w, s.k / 2, s.k);
        for n in 0..s.n {
            for o in 0..s.cout {
                let yo = &mut y[(n * s.cout + o) * hw..][..hw];
                let bias = b.map_or(T::ZERO, |b| b[o]);
                for i in 0..s.h {
                    for j in 0..s.w {
                        let mut acc = bias;
                        for c in 0..s.cin {
                            let xc = &x[(n * s.cin + c) * hw..][..hw];
                            for a in 0..k {
                                let ii = (i + s.h + a - p) % s.h;
                                for e in 0..k {
                                    let jj = (j + s.w + e - p) % s.w;
                                    acc += w[((o * s.cin + c) * k + a) * k + e] * xc[ii * s.w + jj];
                                }
                            }
                        }
                        yo[i * s.w + j] = acc;
                    }
                }
            }
        }
    }

    /// Scalar input gradient.
    pub fn backward_input<T: Float>(dy: &[T], w: &[T], s: Conv2dShape, dx: &mut [T]) {
        let (hw, p, k) = (s.h * s.w, s.k / 2, s.k);
        for n in 0..s.n {
            for c in 0..s.cin {
                let dxc = &mut dx[(n * s.cin + c) * hw..][..hw];
                for i in 0..s.h {
                    for j in 0..s.w {
                        let mut acc = T::ZERO;
                        for o in 0..s.cout {
                            let dyo = &dy[(n * s.cout + o) * hw..][..hw];
                            for a in 0..k {
                                let ii = (i + s.h + p - a) % s.h;
                                for e in 0..k {
                                    let jj = (j + s.w + p - e) % s.w;
                                    acc += w[((o * s.cin + c) * k + a) * k + e] * dyo[ii * s.w + jj];
                                }
                            }
                        }
                        dxc[i * s.w + j] = acc;
                    }
                }
            }
        }
    }

    /// Scalar weight and bias gradients.
    pub fn backward_weight<T: Float>(dy: &[T], x: &[T], s: Conv2dShape, dw: &mut [T], db: Option<&mut [T]>) {
        let (hw, p, k) = (s.h * s.w, s.k / 2, s.k);
        for o in 0..s.cout {
            for c in 0..s.cin {
                for a in 0..k {
                    for e in 0..k {
                        let mut acc = T::ZERO;
                        for n in 0..s.n {
                            let dyo = &dy[(n * s.cout + o) * hw..][..hw];
                            let xc = &x[(n * s.cin + c) * hw..][..hw];
                            for i in 0..s.h {
                                let ii = (i + s.h + a - p) % s.h;
                                for j in 0..s.w {
                                    let jj = (j + s.w + e - p) % s.w;
                                    acc += dyo[i * s.w + j] * xc[ii * s.w + jj];
                                }
                            }
                        }
                        dw[((o * s.cin + c) * k + a) * k + e] = acc;
                    }
                }
            }
        }
        if let Some(db) = db {
            for o in 0..s.cout {
                let mut acc = T::ZERO;
                for n in 0..s.n {
                    acc += dy[(n * s.cout + o) * hw..][..hw].iter().copied().sum::<T>();
                }
                db[o] = acc;
            }
        }
    }
}
