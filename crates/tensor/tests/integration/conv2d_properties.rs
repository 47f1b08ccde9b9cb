//! Identities of circular conv2d through the public `Var` API (so they hold for
//! whichever kernel `conv2d` dispatches to): it commutes with lattice translations
//! (`roll`), it equals the direct sum written out here with its own index arithmetic,
//! and its f32 gradients agree with f64 ones. Lattice extents are random (not
//! multiples of any SIMD width).

use crate::cases::CaseResult;
use latflow_tensor::{Float, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Relative tolerance of an f64 sum of a few hundred products, as a fraction of the
/// sum of the absolute values of its terms (`n eps ~ 1e-13`).
const F64_SUM_TOL: f64 = 1e-12;
/// The same for f32 (`n eps ~ 2e-5` for 300 terms, in the worst case).
const F32_SUM_TOL: f64 = 2e-5;
/// Cases per property.
const CASES: u32 = 48;

/// Random conv problem: (n, cin, cout, h, w, k); h, w >= k.
fn problem(g: &mut StdRng) -> (usize, usize, usize, usize, usize, usize) {
    let (n, cin, cout) = (g.gen_range(1..=3), g.gen_range(1..=4), g.gen_range(1..=4));
    let (dh, dw, k) = (g.gen_range(0..=6), g.gen_range(0..=6), [1, 3, 5][g.gen_range(0..3)]);
    (n, cin, cout, k + dh, k + dw, k)
}

/// `y[n,o,i,j] = b[o] + sum_{c,a,e} w[o,c,a,e] x[n,c,(i+a-k/2) mod H,(j+e-k/2) mod W]`,
/// with signed indices and `rem_euclid` (independent of the kernels' index tricks).
/// Returns `(y, scale)` where `scale` is `|b| + sum |w x|` per output, the size of the
/// rounding error budget.
fn direct(x: &Tensor<f64>, w: &Tensor<f64>, b: Option<&Tensor<f64>>) -> (Vec<f64>, Vec<f64>) {
    let [n, cin, h, wd] = x.shape().try_into().unwrap();
    let [cout, _, k, _] = w.shape().try_into().unwrap();
    let p = (k / 2) as isize;
    let xi = |nn: usize, c: usize, i: isize, j: isize| {
        let (i, j) = (i.rem_euclid(h as isize) as usize, j.rem_euclid(wd as isize) as usize);
        x.data()[((nn * cin + c) * h + i) * wd + j]
    };
    let (mut y, mut scale) = (Vec::new(), Vec::new());
    for nn in 0..n {
        for o in 0..cout {
            for i in 0..h {
                for j in 0..wd {
                    let b0 = b.map_or(0.0, |b| b.data()[o]);
                    let (mut acc, mut abs) = (b0, b0.abs());
                    for c in 0..cin {
                        for a in 0..k {
                            for e in 0..k {
                                let t = w.data()[((o * cin + c) * k + a) * k + e]
                                    * xi(nn, c, i as isize + a as isize - p, j as isize + e as isize - p);
                                acc += t;
                                abs += t.abs();
                            }
                        }
                    }
                    y.push(acc);
                    scale.push(abs);
                }
            }
        }
    }
    (y, scale)
}

fn conv<T: Float>(x: &Tensor<f64>, w: &Tensor<f64>, b: Option<&Tensor<f64>>) -> Tensor<T> {
    let b = b.map(|b| Var::constant(b.cast::<T>()));
    Var::constant(x.cast::<T>()).conv2d(&Var::constant(w.cast::<T>()), b.as_ref()).value().clone()
}

fn assert_close(got: &[f64], want: &[f64], scale: &[f64], tol: f64, what: &str) -> CaseResult {
    ensure_eq!(got.len(), want.len());
    for i in 0..got.len() {
        let err = (got[i] - want[i]).abs();
        ensure!(
            err <= tol * scale[i].max(1e-30),
            "{what}: element {i}: got {}, want {}, |err| {err:e} > {tol:e} * {}",
            got[i],
            want[i],
            scale[i]
        );
    }
    Ok(())
}

fn inputs(seed: u64, n: usize, cin: usize, cout: usize, h: usize, w: usize, k: usize) -> [Tensor<f64>; 3] {
    let mut rng = StdRng::seed_from_u64(seed);
    [
        Tensor::randn(&[n, cin, h, w], &mut rng),
        Tensor::randn(&[cout, cin, k, k], &mut rng),
        Tensor::randn(&[cout], &mut rng),
    ]
}

properties! {

    /// conv2d (f64 and f32) equals the direct sum, with and without bias.
    fn conv2d_equals_direct_sum(g) cases CASES => {
        let (n, cin, cout, h, w, k) = problem(g);
        let bias: bool = g.gen();
        let seed: u64 = g.gen();
        let [x, wt, b] = inputs(seed, n, cin, cout, h, w, k);
        let b = bias.then_some(&b);
        let (want, scale) = direct(&x, &wt, b);
        let y64 = conv::<f64>(&x, &wt, b);
        assert_close(y64.data(), &want, &scale, F64_SUM_TOL, "f64")?;
        let y32: Vec<f64> = conv::<f32>(&x, &wt, b).data().iter().map(|v| v.to_f64()).collect();
        assert_close(&y32, &want, &scale, F32_SUM_TOL, "f32")?;
    }

    /// Translating the lattice commutes with circular conv2d:
    /// `conv(roll(x, s)) == roll(conv(x), s)` along either spatial axis.
    fn conv2d_commutes_with_roll(g) cases CASES => {
        let (n, cin, cout, h, w, k) = problem(g);
        let axis = g.gen_range(2usize..=3);
        let shift = g.gen_range(-8isize..=8);
        let seed: u64 = g.gen();
        let [x, wt, b] = inputs(seed, n, cin, cout, h, w, k);
        let (_, scale) = direct(&x, &wt, Some(&b));
        // Scale of the rolled output: roll the per-output error budget the same way.
        let scale = Var::constant(Tensor::from_vec(&[n, cout, h, w], scale)).roll(axis, shift).value().clone();
        let xr = Var::constant(x.clone()).roll(axis, shift).value().clone();
        let lhs = conv::<f64>(&xr, &wt, Some(&b));
        let rhs = Var::constant(conv::<f64>(&x, &wt, Some(&b))).roll(axis, shift).value().clone();
        assert_close(lhs.data(), rhs.data(), scale.data(), F64_SUM_TOL, "f64")?;
        let lhs = conv::<f32>(&xr, &wt, Some(&b));
        let rhs = Var::constant(conv::<f32>(&x, &wt, Some(&b))).roll(axis, shift).value().clone();
        let (l, r): (Vec<f64>, Vec<f64>) = (lhs.data().iter().map(|v| v.to_f64()).collect(), rhs.data().iter().map(|v| v.to_f64()).collect());
        assert_close(&l, &r, scale.data(), 2.0 * F32_SUM_TOL, "f32")?;
    }

    /// The f32 tape gradients of conv2d (input, weight, bias) agree with the f64 ones.
    fn conv2d_f32_gradients_match_f64(g) cases CASES => {
        let (n, cin, cout, h, w, k) = problem(g);
        let seed: u64 = g.gen();
        let [x, wt, b] = inputs(seed, n, cin, cout, h, w, k);
        let r = Tensor::<f64>::randn(&[n, cout, h, w], &mut StdRng::seed_from_u64(seed ^ 1));
        fn grads<T: Float>(x: &Tensor<f64>, w: &Tensor<f64>, b: &Tensor<f64>, r: &Tensor<f64>) -> Vec<Vec<f64>> {
            let (x, w, b) = (Var::param(x.cast::<T>()), Var::param(w.cast::<T>()), Var::param(b.cast::<T>()));
            let g = x.conv2d(&w, Some(&b)).mul(&Var::constant(r.cast::<T>())).sum().backward();
            [&x, &w, &b].iter().map(|v| g.get(v).unwrap().data().iter().map(|v| v.to_f64()).collect()).collect()
        }
        let (g64, g32) = (grads::<f64>(&x, &wt, &b, &r), grads::<f32>(&x, &wt, &b, &r));
        // Error budget per gradient element: the sum of |terms| of the f64 gradient, i.e.
        // the gradient of the same loss with |r|, |w| and |x|.
        let abs = |t: &Tensor<f64>| t.map(f64::abs);
        let budget = grads::<f64>(&abs(&x), &abs(&wt), &Tensor::ones(&[cout]), &abs(&r));
        for (i, name) in ["dx", "dw", "db"].iter().enumerate() {
            assert_close(&g32[i], &g64[i], &budget[i], F32_SUM_TOL, name)?;
        }
    }
}
