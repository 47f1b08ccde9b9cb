//! Stripe masks of the gauge-equivariant coupling (arXiv:2101.08176 section V.B; Kanwar
//! et al. arXiv:2003.06413), the tutorial's `single_stripes`, `double_stripes` and
//! `link_active_stripes`.
//!
//! Layer `i` updates links in direction `mu = i % 2` at offset `off = (i / 2) % 4`.
//! Along the coordinate `c` that stripes run across (`c = y` for `mu = 0`, `c = x` for
//! `mu = 1`), with `r = (c - off) mod L` the rolled coordinate:
//! - active links `theta_mu(n)` and active plaquettes: `r % 4 == 0` (single stripes);
//! - frozen plaquettes: `(c - off - 1) mod L % 4` in `{0, 1}` (double stripes at `off + 1`);
//! - passive plaquettes: the rest (the stripe just before the active one).
//!
//! Updating `theta_0(n)` moves `P_01(n)` (active) and `P_01(n - e1)` (passive);
//! updating `theta_1(n)` moves `P_01(n)` (active) and `P_01(n - e0)` (passive); the
//! frozen plaquettes, which the coupling's net sees, never move. This needs `L % 4 == 0`.

use latflow_tensor::{Float, Tensor, Var};

/// `1` where `f((c - off) mod L)` holds, with `c` the coordinate striped across
/// (`y` for `mu = 0`, `x` for `mu = 1`): numpy's `np.roll(m, off, axis=1 - mu)` of a
/// mask striped in that coordinate.
fn stripes<T: Float>(h: usize, w: usize, mu: usize, off: usize, f: impl Fn(usize) -> bool) -> Tensor<T> {
    assert!(mu < 2, "stripe masks: direction mu must be 0 or 1, got {mu}");
    let data = (0..h * w)
        .map(|i| {
            let (x, y) = (i / w, i % w);
            let (c, len) = if mu == 0 { (y, w) } else { (x, h) };
            let r = (c + len - off % len) % len;
            if f(r) {
                T::ONE
            } else {
                T::ZERO
            }
        })
        .collect();
    Tensor::from_vec(&[h, w], data)
}

/// The tutorial's `single_stripes((h, w), mu, off)`: one line in every 4, shape `(h, w)`.
///
/// ```
/// use latflow_flow::u1::masks::single_stripes;
/// let m = single_stripes::<f64>(4, 4, 0, 1); // columns y = 1
/// assert_eq!(m.data()[..4], [0.0, 1.0, 0.0, 0.0]);
/// ```
///
/// # Panics
/// If `mu > 1`.
pub fn single_stripes<T: Float>(h: usize, w: usize, mu: usize, off: usize) -> Tensor<T> {
    stripes(h, w, mu, off, |r| r % 4 == 0)
}

/// The tutorial's `double_stripes((h, w), mu, off)`: two adjacent lines in every 4,
/// shape `(h, w)`.
///
/// # Panics
/// If `mu > 1`.
pub fn double_stripes<T: Float>(h: usize, w: usize, mu: usize, off: usize) -> Tensor<T> {
    stripes(h, w, mu, off, |r| r % 4 < 2)
}

/// The tutorial's `link_active_stripes((2, h, w), mu, off)`: links of direction `mu` on
/// the single stripes of [`single_stripes`], shape `(2, h, w)` (zero for the other
/// direction).
///
/// # Panics
/// If `mu > 1`.
pub fn link_active_stripes<T: Float>(h: usize, w: usize, mu: usize, off: usize) -> Tensor<T> {
    let s = single_stripes::<T>(h, w, mu, off);
    let mut data = vec![T::ZERO; 2 * h * w];
    data[mu * h * w..(mu + 1) * h * w].copy_from_slice(s.data());
    Tensor::from_vec(&[2, h, w], data)
}

/// The three plaquette masks of one NCP coupling, shape `(h, w)` each, a partition of
/// the lattice: `frozen = double_stripes(mu, off + 1)`, `active = single_stripes(mu, off)`,
/// `passive = 1 - frozen - active`.
#[derive(Clone, Debug, PartialEq)]
pub struct PlaqMasks<T: Float> {
    /// Plaquettes the net sees; unchanged by the layer.
    pub frozen: Tensor<T>,
    /// Plaquettes transformed by the NCP mixture.
    pub active: Tensor<T>,
    /// Plaquettes that change only as a side effect of the link update.
    pub passive: Tensor<T>,
}

impl<T: Float> PlaqMasks<T> {
    /// The masks of the coupling with direction `mu` and offset `off`.
    ///
    /// # Panics
    /// If `mu > 1`.
    pub fn new(h: usize, w: usize, mu: usize, off: usize) -> Self {
        let frozen = double_stripes::<T>(h, w, mu, off + 1);
        let active = single_stripes::<T>(h, w, mu, off);
        let passive = frozen.zip_map(&active, |f, a| T::ONE - f - a);
        PlaqMasks { frozen, active, passive }
    }
}

/// The sites on the single stripes of [`single_stripes`]`(mu, off)` of the last two axes
/// `(..., H, W)`: `(..., H, W/4)` (columns `y = off + 4k`) for `mu = 0`, `(..., H/4, W)`
/// (rows `x = off + 4k`) for `mu = 1`, in row-major site order. A reshape and a select,
/// so gradients flow through it.
///
/// # Panics
/// If `mu > 1`, `off > 3`, or the striped extent is not a multiple of 4.
#[track_caller]
pub fn gather_stripe<T: Float>(x: &Var<T>, mu: usize, off: usize) -> Var<T> {
    let (shape, axis) = stripe_view(x.shape(), mu, off);
    x.reshape(&shape).select(axis, off)
}

/// `full (..., H, W)` with its [`gather_stripe`] sites replaced by `vals`; the other
/// sites are copied bit for bit. Gradients flow to both inputs.
///
/// # Panics
/// As [`gather_stripe`], or if `vals` does not have the gathered shape.
#[track_caller]
pub fn scatter_stripe<T: Float>(full: &Var<T>, vals: &Var<T>, mu: usize, off: usize) -> Var<T> {
    let (shape, axis) = stripe_view(full.shape(), mu, off);
    let r = full.reshape(&shape);
    let parts: Vec<Var<T>> = (0..4).map(|k| if k == off { vals.clone() } else { r.select(axis, k) }).collect();
    Var::stack(&parts, axis).reshape(full.shape())
}

/// The shape `(..., H, W/4, 4)` or `(..., H/4, 4, W)` and the axis of the phase.
#[track_caller]
fn stripe_view(s: &[usize], mu: usize, off: usize) -> (Vec<usize>, usize) {
    let r = s.len();
    assert!(r >= 2 && mu < 2 && off < 4, "stripe gather: shape {s:?}, mu {mu}, offset {off}");
    let ax = if mu == 0 { r - 1 } else { r - 2 };
    assert!(s[ax].is_multiple_of(4), "stripe gather: extent {} of {s:?} is not a multiple of 4", s[ax]);
    let mut shape = s[..ax].to_vec();
    shape.extend([s[ax] / 4, 4]);
    shape.extend(&s[ax + 1..]);
    (shape, ax + 1)
}
