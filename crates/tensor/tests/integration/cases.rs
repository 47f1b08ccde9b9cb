//! Seeded property checks: a property runs on `n` random cases, case `i` drawing its shape and
//! values from its own `StdRng`, seeded from the property's name and `i`. The cases are the
//! same on every run and machine (CI cannot pass or fail by the luck of the draw), and a
//! failure names the case's seed: `LATFLOW_CASE_SEED=0x... cargo test --release -p
//! latflow-tensor --test integration NAME` reruns that one case. `LATFLOW_CASES=N` runs `N`
//! cases per property instead of each property's default (a longer search).
//!
//! (These were proptest properties; proptest and the crates it pulls in took about 3 minutes
//! of CPU in every CI run, its runner was compiled anew for every property, and its cases were
//! drawn from a fresh random seed on every run.)

use rand::rngs::StdRng;
use rand::SeedableRng;

/// What a case returns: `Err(message)` when the property fails.
pub type CaseResult = Result<(), String>;

/// `return Err(message)` from a case unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        let holds: bool = $cond; // (a NaN comparison does not hold)
        if !holds {
            return Err(format!($($fmt)+));
        }
    };
    ($cond:expr) => {
        let holds: bool = $cond;
        if !holds {
            return Err(format!("failed: {}", stringify!($cond)));
        }
    };
}

/// `return Err(..)` from a case unless `a == b`.
macro_rules! ensure_eq {
    ($a:expr, $b:expr) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err(format!("{} != {}: {:?} vs {:?}", stringify!($a), stringify!($b), a, b));
        }
    }};
}

/// What [`assume!`] returns for a case outside the property's assumptions.
pub const SKIPPED: &str = "(case skipped: outside the property's assumptions)";

/// Skips the case unless `cond` holds (proptest's `prop_assume!`); [`check`] fails a property
/// that skips more than half of its cases, so one cannot pass by testing nothing.
macro_rules! assume {
    ($cond:expr) => {
        let holds: bool = $cond;
        if !holds {
            return Err($crate::cases::SKIPPED.to_string());
        }
    };
}

/// `#[test]` functions that run their body as a property: `fn name(g) cases N => { ... }`,
/// with `g: &mut StdRng` the case's generator; the body may use `?` on [`CaseResult`] and
/// [`assume!`] to skip a case outside its assumptions (`return Ok(())` passes the case: only
/// for a skip that is not the property's, e.g. a CPU without the kernel under test).
macro_rules! properties {
    ($($(#[$meta:meta])* fn $name:ident($g:ident) cases $n:expr => $body:block)*) => {$(
        $(#[$meta])*
        #[test]
        fn $name() {
            $crate::cases::check(
                concat!(module_path!(), "::", stringify!($name)),
                $n,
                |$g: &mut rand::rngs::StdRng| -> $crate::cases::CaseResult {
                    $body
                    #[allow(unreachable_code)]
                    Ok(())
                },
            );
        }
    )*};
}

/// Runs `case` on `n` cases (or `LATFLOW_CASES`), or on the one seed `LATFLOW_CASE_SEED`;
/// panics naming the first failing case's seed, or when more than half the cases were skipped.
pub fn check(name: &str, n: u32, mut case: impl FnMut(&mut StdRng) -> CaseResult) {
    let env = |key: &str| std::env::var(key).ok();
    if let Some(seed) = env("LATFLOW_CASE_SEED") {
        let s = seed.trim_start_matches("0x");
        let seed = u64::from_str_radix(s, 16).unwrap_or_else(|_| panic!("LATFLOW_CASE_SEED={seed}: not a hex number"));
        if !run(name, seed, 0, 1, &mut case) {
            eprintln!("{name}: the case with seed {seed:#x} was skipped");
        }
        return;
    }
    let n = env("LATFLOW_CASES").map_or(n, |v| v.parse().unwrap_or_else(|_| panic!("LATFLOW_CASES={v}: not a number")));
    // FNV-1a of the name: each property draws its own cases
    let base = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let skipped = (0..n)
        .filter(|&i| !run(name, base.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)), i, n, &mut case))
        .count();
    assert!(
        2 * skipped as u64 <= n as u64,
        "{name}: {skipped} of {n} cases skipped (assume!): the property tested too little"
    );
}

/// One case; `false` when it was skipped.
fn run(name: &str, seed: u64, i: u32, n: u32, case: &mut impl FnMut(&mut StdRng) -> CaseResult) -> bool {
    /// Names the case when its body panics (an `assert!` or a kernel's own check).
    struct Announce<'a>(&'a str, u64, u32, u32);
    impl Drop for Announce<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!(
                    "{}: case {} of {} panicked; rerun it alone with LATFLOW_CASE_SEED={:#x}",
                    self.0, self.2, self.3, self.1
                );
            }
        }
    }
    let _announce = Announce(name, seed, i, n);
    match case(&mut StdRng::seed_from_u64(seed)) {
        Ok(()) => true,
        Err(e) if e == SKIPPED => false,
        Err(e) => panic!("{name}: case {i} of {n} failed (rerun it alone with LATFLOW_CASE_SEED={seed:#x}): {e}"),
    }
}

/// An index into a collection whose length is known only later (proptest's `Index`):
/// [`Index::index`] maps it into `0..n`.
#[derive(Clone, Copy, Debug)]
pub struct Index(u64);

impl Index {
    /// A random index.
    pub fn draw(g: &mut StdRng) -> Self {
        Index(rand::Rng::gen(g))
    }
    /// The index in `0..n` (`n > 0`).
    pub fn index(self, n: usize) -> usize {
        assert!(n > 0, "Index::index(0)");
        (self.0 % n as u64) as usize
    }
}
