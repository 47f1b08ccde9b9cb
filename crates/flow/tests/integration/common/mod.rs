//! Helpers shared by the phi^4 and U(1) flow audits.

/// log|det A| by LU with partial pivoting (the finite-difference Jacobian audits).
pub fn log_abs_det(mut a: Vec<Vec<f64>>) -> f64 {
    let n = a.len();
    let mut s = 0.0;
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap();
        a.swap(c, p);
        let d = a[c][c];
        s += d.abs().ln();
        for r in c + 1..n {
            let f = a[r][c] / d;
            for k in c..n {
                a[r][k] -= f * a[c][k];
            }
        }
    }
    s
}

#[test]
fn log_abs_det_of_a_known_matrix() {
    // det [[0, 2, 0], [1, 0, 0], [0, 0, -3]] = 6 (needs a pivot swap)
    let a = vec![vec![0.0, 2.0, 0.0], vec![1.0, 0.0, 0.0], vec![0.0, 0.0, -3.0]];
    assert!((log_abs_det(a) - 6f64.ln()).abs() < 1e-15);
}

/// Largest absolute difference of `a` from `b`, relative to the largest magnitude in `b`
/// (the fused ops' tests against the composed ops they replace).
pub fn max_rel(a: &latflow_tensor::Tensor<f64>, b: &latflow_tensor::Tensor<f64>) -> f64 {
    let scale = b.data().iter().fold(1e-300f64, |m, x| m.max(x.abs()));
    a.data().iter().zip(b.data()).map(|(x, y)| (x - y).abs() / scale).fold(0.0, f64::max)
}
