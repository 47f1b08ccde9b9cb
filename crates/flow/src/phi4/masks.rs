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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parities_are_complementary_and_match_the_tutorial() {
        let m0 = checkerboard::<f64>(4, 4, 0);
        let m1 = checkerboard::<f64>(4, 4, 1);
        // torch: c = ones - parity; c[::2, ::2] = parity; c[1::2, 1::2] = parity
        assert_eq!(m0.data()[0], 0.0);
        assert_eq!(m0.data()[1], 1.0);
        assert_eq!(m1.data()[0], 1.0);
        for (a, b) in m0.data().iter().zip(m1.data()) {
            assert_eq!(a + b, 1.0);
        }
    }
}
