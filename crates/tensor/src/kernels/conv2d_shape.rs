//! The shape of a conv2d call and the weight layout helpers every conv kernel shares (the
//! dispatcher [`super::conv2d`] and its SIMD and AVX-512 paths use them; none of them uses
//! the others through here).

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

/// A pass of conv2d: forward, input gradient, weight (and bias) gradient (the dispatcher
/// picks a backend per pass).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pass {
    /// The forward pass.
    Forward,
    /// The input gradient.
    BackwardInput,
    /// The weight (and bias) gradient.
    BackwardWeight,
}

/// `w[o,c,a,e] -> w'[c,o,k-1-a,k-1-e]`: the kernel whose forward pass is the input
/// gradient of `w`'s (in/out channels swapped, taps flipped).
pub(crate) fn flipped_weights<T: Copy + Default>(w: &[T], s: &Conv2dShape) -> Vec<T> {
    let mut wt = Vec::new();
    flipped_weights_into(w, s, &mut wt);
    wt
}

/// [`flipped_weights`] into `wt` (resized to `w.len()`, every element written): a buffer a
/// caller keeps between calls.
pub(crate) fn flipped_weights_into<T: Copy + Default>(w: &[T], s: &Conv2dShape, wt: &mut Vec<T>) {
    let (k, kk) = (s.k, s.k * s.k);
    wt.clear();
    wt.resize(w.len(), T::default());
    for o in 0..s.cout {
        for c in 0..s.cin {
            let src = &w[(o * s.cin + c) * kk..][..kk];
            let dst = &mut wt[(c * s.cout + o) * kk..][..kk];
            for a in 0..k {
                for e in 0..k {
                    dst[(k - 1 - a) * k + (k - 1 - e)] = src[a * k + e];
                }
            }
        }
    }
}
