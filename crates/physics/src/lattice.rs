//! Periodic hypercubic lattices in any number of dimensions.
//!
//! Sites are numbered row-major with the last axis fastest, the layout of a
//! configuration tensor `(N, L_0, ..., L_{Nd-1})` without its batch axis, so that
//! site `n` of configuration `b` is element `b * V + n` of the tensor's data.
//! Direction `mu` is tensor axis `mu + 1` (`torch.roll(phi, -1, mu + 1)` is
//! `phi(n + mu_hat)`).

/// A periodic lattice with precomputed neighbour tables.
///
/// ```
/// use latflow_physics::Lattice;
/// let lat = Lattice::new(&[4, 3]);
/// assert_eq!(lat.volume(), 12);
/// let n = lat.index(&[3, 2]);
/// assert_eq!(lat.coords(lat.fwd(n, 0)), vec![0, 2]); // wraps around in x
/// assert_eq!(lat.coords(lat.bwd(n, 1)), vec![3, 1]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lattice {
    shape: Vec<usize>,
    strides: Vec<usize>,
    volume: usize,
    /// `fwd[n * nd + mu]` = site `n + mu_hat`.
    fwd: Vec<usize>,
    /// `bwd[n * nd + mu]` = site `n - mu_hat`.
    bwd: Vec<usize>,
}

impl Lattice {
    /// The periodic lattice of extents `shape` (`shape[mu]` sites in direction `mu`).
    ///
    /// # Panics
    /// If `shape` is empty or an extent is zero.
    #[track_caller]
    pub fn new(shape: &[usize]) -> Self {
        assert!(
            !shape.is_empty() && shape.iter().all(|&l| l > 0),
            "Lattice::new: extents must be positive, got {shape:?}"
        );
        let nd = shape.len();
        let mut strides = vec![1; nd];
        for mu in (0..nd - 1).rev() {
            strides[mu] = strides[mu + 1] * shape[mu + 1];
        }
        let volume: usize = shape.iter().product();
        let mut fwd = vec![0; volume * nd];
        let mut bwd = vec![0; volume * nd];
        for n in 0..volume {
            for mu in 0..nd {
                let x = (n / strides[mu]) % shape[mu];
                let up = if x + 1 == shape[mu] { n - x * strides[mu] } else { n + strides[mu] };
                let down = if x == 0 { n + (shape[mu] - 1) * strides[mu] } else { n - strides[mu] };
                fwd[n * nd + mu] = up;
                bwd[n * nd + mu] = down;
            }
        }
        Lattice { shape: shape.to_vec(), strides, volume, fwd, bwd }
    }

    /// The `L^nd` lattice.
    ///
    /// # Panics
    /// If `l == 0` or `nd == 0`.
    #[track_caller]
    pub fn hypercubic(l: usize, nd: usize) -> Self {
        Self::new(&vec![l; nd])
    }

    /// Number of dimensions `Nd`.
    pub fn nd(&self) -> usize {
        self.shape.len()
    }

    /// Extents per direction.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of sites `V = prod_mu L_mu`.
    pub fn volume(&self) -> usize {
        self.volume
    }

    /// Row-major strides of the site index.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Site index of coordinates (each taken modulo its extent).
    ///
    /// # Panics
    /// If `coords.len() != nd`.
    #[track_caller]
    pub fn index(&self, coords: &[usize]) -> usize {
        assert_eq!(coords.len(), self.nd(), "Lattice::index: {coords:?} on a lattice of shape {:?}", self.shape);
        coords.iter().zip(&self.shape).zip(&self.strides).map(|((&c, &l), &s)| (c % l) * s).sum()
    }

    /// Coordinates of site `n`.
    pub fn coords(&self, n: usize) -> Vec<usize> {
        self.shape.iter().zip(&self.strides).map(|(&l, &s)| (n / s) % l).collect()
    }

    /// The neighbour `n + mu_hat`.
    #[inline]
    pub fn fwd(&self, n: usize, mu: usize) -> usize {
        self.fwd[n * self.shape.len() + mu]
    }

    /// The neighbour `n - mu_hat`.
    #[inline]
    pub fn bwd(&self, n: usize, mu: usize) -> usize {
        self.bwd[n * self.shape.len() + mu]
    }

    /// The forward neighbour table: `fwd_table()[n * nd + mu] = n + mu_hat`.
    pub fn fwd_table(&self) -> &[usize] {
        &self.fwd
    }

    /// The backward neighbour table: `bwd_table()[n * nd + mu] = n - mu_hat`.
    pub fn bwd_table(&self) -> &[usize] {
        &self.bwd
    }

    /// The site `n + k mu_hat` for any integer `k` (periodic).
    pub fn shift(&self, n: usize, mu: usize, k: isize) -> usize {
        let l = self.shape[mu] as isize;
        let x = ((n / self.strides[mu]) % self.shape[mu]) as isize;
        let y = (x + k).rem_euclid(l);
        (n as isize + (y - x) * self.strides[mu] as isize) as usize
    }

    /// The site `n + x` for a displacement `x` given by coordinates.
    pub fn translate(&self, n: usize, x: &[usize]) -> usize {
        (0..self.nd()).fold(n, |m, mu| self.shift(m, mu, x[mu] as isize))
    }
}
