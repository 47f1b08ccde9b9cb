//! Numbers to little-endian bytes and back, bit for bit (NaN payloads and signed zeros
//! included), for the byte buffers of [`crate::Comm`].
//!
//! ```
//! use latflow_comm::wire::{Reader, Writer};
//! let mut w = Writer::default();
//! w.u64(3);
//! w.f64s(&[1.5, -0.0]);
//! w.f32s(&[f32::NAN]);
//! let bytes = w.into_bytes();
//! let mut r = Reader::new(&bytes);
//! assert_eq!(r.u64(), 3);
//! assert_eq!(r.f64s(2)[1].to_bits(), (-0.0f64).to_bits());
//! assert!(r.f32s(1)[0].is_nan());
//! r.finish();
//! ```

/// Appends numbers to a byte buffer.
#[derive(Default, Debug)]
pub struct Writer(Vec<u8>);

impl Writer {
    /// An empty buffer with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        Writer(Vec::with_capacity(bytes))
    }
    /// One `u64`.
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// `f64`s, 8 bytes each.
    pub fn f64s(&mut self, v: &[f64]) {
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }
    /// `f32`s, 4 bytes each.
    pub fn f32s(&mut self, v: &[f32]) {
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }
    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Reads numbers back in the order a [`Writer`] wrote them.
///
/// Every method panics (with `#[track_caller]`) when the buffer holds fewer bytes than
/// asked for: the ranks disagree on what they exchange, a bug, not a user error.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }
    #[track_caller]
    fn take(&mut self, n: usize) -> &'a [u8] {
        let end = self.at + n;
        assert!(
            end <= self.bytes.len(),
            "wire: reading {n} bytes at {} of a {}-byte buffer",
            self.at,
            self.bytes.len()
        );
        let s = &self.bytes[self.at..end];
        self.at = end;
        s
    }
    /// One `u64`.
    #[track_caller]
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    /// `n` `f64`s.
    #[track_caller]
    pub fn f64s(&mut self, n: usize) -> Vec<f64> {
        self.take(8 * n).chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
    }
    /// `n` `f32`s.
    #[track_caller]
    pub fn f32s(&mut self, n: usize) -> Vec<f32> {
        self.take(4 * n).chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
    }
    /// Whether every byte has been read.
    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }
    /// Checks that every byte has been read.
    ///
    /// # Panics
    /// If bytes are left.
    #[track_caller]
    pub fn finish(self) {
        assert!(self.is_done(), "wire: {} of {} bytes left unread", self.bytes.len() - self.at, self.bytes.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip_bit_for_bit() {
        let d = [0.1f64, -0.0, f64::INFINITY, f64::from_bits(0x7ff8_0000_0000_1234), f64::MIN_POSITIVE / 3.0];
        let f = [0.1f32, -0.0, f32::NEG_INFINITY, f32::from_bits(0x7fc0_0042), 1e-42];
        let mut w = Writer::with_capacity(64);
        w.f32s(&f);
        w.u64(u64::MAX - 7);
        w.f64s(&d);
        let b = w.into_bytes();
        assert_eq!(b.len(), 4 * f.len() + 8 + 8 * d.len());
        let mut r = Reader::new(&b);
        let f2 = r.f32s(f.len());
        assert_eq!(r.u64(), u64::MAX - 7);
        let d2 = r.f64s(d.len());
        r.finish();
        assert_eq!(f.map(f32::to_bits).to_vec(), f2.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        assert_eq!(d.map(f64::to_bits).to_vec(), d2.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "reading 8 bytes at 4 of a 4-byte buffer")]
    fn reading_past_the_end_names_the_sizes() {
        let mut w = Writer::default();
        w.f32s(&[1.0]);
        let b = w.into_bytes();
        let mut r = Reader::new(&b);
        r.f32s(1);
        r.u64();
    }
}
