//! Checkerboard masks for affine couplings (arXiv:2101.08176 section IV.B).

use latflow_tensor::{Float, Tensor};

/// The tutorial's `make_checker_mask(shape, parity)`: `m[x][y] = parity` where `x + y`
/// is even and `1 - parity` where it is odd, so the two parities are complementary.
///
/// # Panics
/// If `parity` is not 0 or 1.
pub fn checkerboard<T: Float>(h: usize, w: usize, parity: usize) -> Tensor<T> {
    assert!(parity < 2, "checkerboard parity must be 0 or 1, got {parity}");
    let data = (0..h * w)
        .map(|i| {
            let even = ((i / w) + (i % w)).is_multiple_of(2);
            if even == (parity == 1) {
                T::ONE
            } else {
                T::ZERO
            }
        })
        .collect();
    Tensor::from_vec(&[h, w], data)
}
