//! A table of per-configuration numbers that can be read again from the start: in memory
//! while small, spilled to a scratch file beyond [`MEMORY_ROWS_BYTES`], so that the
//! statistics of an ensemble of any size run in constant memory (they read it a few times,
//! [`crate::stats::gamma_method_replay`], [`crate::reweight::reweight_replay`]).
//!
//! ```
//! use latflow_sampler::spool::Spool;
//! let mut s = Spool::new(2);
//! for i in 0..5 {
//!     s.push(&[i as f64, 2.0 * i as f64]).unwrap();
//! }
//! let mut sum = 0.0;
//! s.scan(&mut |_, row| sum += row[1]).unwrap();
//! assert_eq!((s.len(), sum), (5, 20.0));
//! ```

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of rows kept in memory before the table moves to a scratch file (16 MiB).
pub const MEMORY_ROWS_BYTES: usize = 16 << 20;

/// Rows of `width` f64 values, appended in order and scanned in order.
pub struct Spool {
    width: usize,
    len: usize,
    memory: Vec<f64>,
    file: Option<(PathBuf, BufWriter<File>)>,
    limit: usize,
}

impl Spool {
    /// An empty table of rows of `width` values.
    pub fn new(width: usize) -> Self {
        Self::with_memory_limit(width, MEMORY_ROWS_BYTES)
    }

    /// The same, spilling to a scratch file beyond `bytes` in memory.
    pub fn with_memory_limit(width: usize, bytes: usize) -> Self {
        Spool { width, len: 0, memory: Vec::new(), file: None, limit: bytes / 8 }
    }

    /// Rows appended.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row was appended.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Whether the rows are in a scratch file.
    pub fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// The scratch file the rows were moved to (`None` while they are in memory); it is
    /// removed when the spool is dropped.
    pub fn scratch_path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(path, _)| path.as_path())
    }

    /// Appends a row.
    ///
    /// # Errors
    /// The scratch file's path and the OS error.
    ///
    /// # Panics
    /// If the row is not `width` long.
    #[track_caller]
    pub fn push(&mut self, row: &[f64]) -> Result<(), String> {
        assert_eq!(row.len(), self.width, "spool row of the wrong width");
        self.len += 1;
        if let Some((path, f)) = &mut self.file {
            // BufWriter batches these: no allocation per row
            for v in row {
                f.write_all(&v.to_le_bytes())
                    .map_err(|e| format!("cannot write scratch file {}: {e}", path.display()))?;
            }
            return Ok(());
        }
        self.memory.extend_from_slice(row);
        if self.memory.len() > self.limit {
            self.spill()?;
        }
        Ok(())
    }

    /// Moves the rows to a scratch file in the system's temporary directory (removed when
    /// the spool is dropped).
    fn spill(&mut self) -> Result<(), String> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("latflow-spool-{}-{k}.f64", std::process::id()));
        let err = |e: std::io::Error| format!("cannot write scratch file {}: {e}", path.display());
        let mut f = BufWriter::new(File::options().read(true).write(true).create_new(true).open(&path).map_err(err)?);
        let bytes: Vec<u8> = self.memory.iter().flat_map(|v| v.to_le_bytes()).collect();
        f.write_all(&bytes).map_err(err)?;
        self.memory = Vec::new();
        self.file = Some((path, f));
        Ok(())
    }

    /// Calls `visit(index, row)` for every row in order.
    ///
    /// # Errors
    /// The scratch file's path and the OS error.
    pub fn scan(&mut self, visit: &mut dyn FnMut(usize, &[f64])) -> Result<(), String> {
        let w = self.width.max(1);
        let Some((path, f)) = &mut self.file else {
            for (i, row) in self.memory.chunks_exact(w).enumerate() {
                visit(i, row);
            }
            return Ok(());
        };
        let err = |e: std::io::Error| format!("cannot read scratch file {}: {e}", path.display());
        f.flush().map_err(err)?;
        let file = f.get_mut();
        file.seek(SeekFrom::Start(0)).map_err(err)?;
        let rows_per_read = (1 << 20) / (8 * w) + 1;
        let mut bytes = vec![0u8; rows_per_read * w * 8];
        let mut row = vec![0.0; w];
        let mut i = 0;
        while i < self.len {
            let rows = rows_per_read.min(self.len - i);
            file.read_exact(&mut bytes[..rows * w * 8]).map_err(err)?;
            for r in 0..rows {
                for (k, v) in row.iter_mut().enumerate() {
                    let o = (r * w + k) * 8;
                    *v = f64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
                }
                visit(i + r, &row);
            }
            i += rows;
        }
        file.seek(SeekFrom::End(0)).map_err(err)?;
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some((path, _)) = self.file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
