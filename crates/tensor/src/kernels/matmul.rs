//! Matrix products: `(.., m, k) x (.., k, n) -> (.., m, n)` with equal leading (batch)
//! dimensions. Row-major, i-k-j loop order so the inner loop streams (vectorizes).

use crate::{Float, Tensor};

/// Batched (or plain 2-D) matrix product.
///
/// # Panics
/// If ranks differ, are below 2, batch dimensions differ, or inner sizes disagree.
#[track_caller]
pub fn matmul<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
    let (sa, sb) = (a.shape(), b.shape());
    let r = sa.len();
    let ok = r >= 2 && sb.len() == r && sa[..r - 2] == sb[..r - 2] && sa[r - 1] == sb[r - 2];
    assert!(ok, "matmul: shape mismatch, {sa:?} vs {sb:?}");
    let (m, k, n) = (sa[r - 2], sa[r - 1], sb[r - 1]);
    let batch: usize = sa[..r - 2].iter().product();
    let mut out = vec![T::ZERO; batch * m * n];
    for bi in 0..batch {
        let ab = &a.data()[bi * m * k..(bi + 1) * m * k];
        let bb = &b.data()[bi * k * n..(bi + 1) * k * n];
        let ob = &mut out[bi * m * n..(bi + 1) * m * n];
        for i in 0..m {
            let orow = &mut ob[i * n..(i + 1) * n];
            for p in 0..k {
                let aip = ab[i * k + p];
                for (o, &bv) in orow.iter_mut().zip(&bb[p * n..(p + 1) * n]) {
                    *o += aip * bv;
                }
            }
        }
    }
    let mut shape = sa.to_vec();
    shape[r - 1] = n;
    Tensor::from_vec(&shape, out)
}
