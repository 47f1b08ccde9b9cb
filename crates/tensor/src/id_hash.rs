//! A one-multiply hasher for integer keys (node ids, buffer lengths).

/// Hashes integer keys (the tape's node ids, the pool's buffer lengths) with one multiply: SipHash's
/// protection against chosen keys buys nothing here and costs a visible share of a step.
#[derive(Clone, Copy, Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, i: usize) {
        self.0 = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Maps and sets keyed by node id.
pub type IdBuild = std::hash::BuildHasherDefault<IdHasher>;
