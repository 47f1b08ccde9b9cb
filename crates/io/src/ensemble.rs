//! Ensembles on disk: configurations and per-configuration columns in chunked safetensors
//! files that numpy (or the `safetensors` package) reads directly.
//!
//! An ensemble is a directory of files `chunk-s{stream:04}-{index:06}.safetensors`. A
//! *stream* is one Markov chain (an HMC chain; a flow's independence-Metropolis chain is
//! stream 0); its chunks hold consecutive configurations. Each chunk holds
//! - `x`: the configurations, shape `(count, *config_shape)`, `F32` or `F64` (a flow in f32
//!   writes `F32`: its samples are f32 numbers, so nothing is rounded);
//! - one tensor of shape `(count,)` per column (`F64` or `I64`: the action, `log q`, the
//!   Markov chain's state index, `dH`, acceptance, ...);
//! - metadata: the run's (theory, couplings, seeds, checkpoint digest, latflow version, ...),
//!   identical in every chunk, plus [`FORMAT_KEY`], `stream`, `index`, `first` (the position
//!   of its first configuration in the stream) and `count`.
//!
//! Chunks are written atomically (temp file, rename) as they fill, so a run killed at any
//! point leaves complete chunks only, and memory stays at one chunk per stream whatever the
//! ensemble's size. [`Ensemble::open`] checks that the chunks fit together (same metadata,
//! shapes, dtypes and columns; consecutive indices and positions) and reads them one at a time.
//!
//! A run that finishes writes [`MANIFEST_FILE`] last ([`write_manifest`], atomically): one CSV
//! row per chunk, `file,stream,index,first,count,bytes,sha256`. Its presence says the run
//! completed (every stream of every rank is there, to its last chunk); [`Ensemble::open`] then
//! refuses a chunk missing from the directory or not listed, and [`Ensemble::read`] a chunk
//! whose size or SHA-256 differs from its row (`sha256sum` checks the same). Without it (a run
//! killed or stopped by an error) the complete chunks are read as before.

use crate::safetensors::{Dtype, SafeTensors, TensorData};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Metadata key holding [`FORMAT`].
pub const FORMAT_KEY: &str = "format";
/// The format's name and version, in every chunk.
pub const FORMAT: &str = "latflow-ensemble-1";
/// Bytes of configurations per chunk the writer aims at (4 MiB).
pub const CHUNK_BYTES: usize = 4 << 20;
/// Metadata keys that differ from chunk to chunk.
const PER_CHUNK: [&str; 4] = ["stream", "index", "first", "count"];
/// The manifest of a finished ensemble, in its directory.
pub const MANIFEST_FILE: &str = "manifest.csv";
/// [`MANIFEST_FILE`]'s header line.
const MANIFEST_HEADER: &str = "file,stream,index,first,count,bytes,sha256";

/// One chunk's row of [`MANIFEST_FILE`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The chunk's file name ([`chunk_name`]).
    pub file: String,
    /// Its stream.
    pub stream: usize,
    /// Its index in the stream.
    pub index: usize,
    /// Position of its first configuration in the stream.
    pub first: usize,
    /// Configurations.
    pub count: usize,
    /// File size.
    pub bytes: u64,
    /// SHA-256 of the file, 64 lowercase hex digits.
    pub sha256: String,
}

/// Reads and checks [`MANIFEST_FILE`] in `dir`: `None` when there is none.
fn read_manifest(dir: &Path) -> Result<Option<Vec<ManifestEntry>>, String> {
    let path = dir.join(MANIFEST_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut lines = text.lines();
    if lines.next() != Some(MANIFEST_HEADER) {
        return Err(format!("{}: not a manifest (its first line must be {MANIFEST_HEADER})", path.display()));
    }
    let mut rows = Vec::new();
    for (k, line) in lines.enumerate() {
        let bad = |what: &str| format!("{} line {}: {what}: {line:?}", path.display(), k + 2);
        let f: Vec<&str> = line.split(',').collect();
        let [file, stream, index, first, count, bytes, sha] = f.as_slice() else {
            return Err(bad("expected 7 fields"));
        };
        let num = |v: &str| v.parse::<u64>().map_err(|_| bad("not a number"));
        let e = ManifestEntry {
            file: file.to_string(),
            stream: num(stream)? as usize,
            index: num(index)? as usize,
            first: num(first)? as usize,
            count: num(count)? as usize,
            bytes: num(bytes)?,
            sha256: sha.to_string(),
        };
        if parse_name(file) != Some((e.stream, e.index)) {
            return Err(bad("the file name is not the chunk's stream and index"));
        }
        if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad("the SHA-256 is not 64 lowercase hex digits"));
        }
        rows.push(e);
    }
    Ok(Some(rows))
}

/// Writes [`MANIFEST_FILE`] of the finished ensemble in `dir` (temp file, rename: it appears
/// whole or not at all) after reading every chunk back through [`Ensemble::read`]; returns
/// the configurations it lists.
///
/// # Errors
/// The first chunk that does not fit, a manifest already there, or the write's OS error.
pub fn write_manifest(dir: &Path) -> Result<usize, String> {
    let e = Ensemble::open(dir)?;
    if e.manifest.is_some() {
        return Err(format!("{}: the ensemble already has a {MANIFEST_FILE}", dir.display()));
    }
    let mut out = format!("{MANIFEST_HEADER}\n");
    let mut total = 0;
    for (s, files) in e.streams.iter().enumerate() {
        let mut next = 0;
        for (i, path) in files.iter().enumerate() {
            let c = e.read(s, i, next)?;
            next += c.count;
            let bytes = std::fs::metadata(path).map_err(|err| format!("{}: {err}", path.display()))?.len();
            let sha = crate::digest::sha256_file(path)?;
            out.push_str(&format!("{},{s},{i},{},{},{bytes},{sha}\n", chunk_name(s, i), c.first, c.count));
        }
        total += next;
    }
    let path = dir.join(MANIFEST_FILE);
    let tmp = dir.join(format!(".{MANIFEST_FILE}.tmp{}", std::process::id()));
    std::fs::write(&tmp, out).map_err(|err| format!("cannot write {}: {err}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .map_err(|err| format!("cannot rename {} to {}: {err}", tmp.display(), path.display()))?;
    Ok(total)
}

/// What a chunk holds besides its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Shape of one configuration.
    pub shape: Vec<usize>,
    /// Dtype of `x` (`F32` or `F64`).
    pub dtype: Dtype,
    /// Names of the `F64` columns.
    pub floats: Vec<String>,
    /// Names of the `I64` columns.
    pub ints: Vec<String>,
}

impl Layout {
    /// Values per configuration.
    pub fn dof(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The file name of chunk `index` of `stream`.
pub fn chunk_name(stream: usize, index: usize) -> String {
    format!("chunk-s{stream:04}-{index:06}.safetensors")
}

/// Parses a chunk file name into `(stream, index)`.
fn parse_name(name: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("chunk-s")?.strip_suffix(".safetensors")?;
    let (s, i) = rest.split_once('-')?;
    let digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    (digits(s) && digits(i)).then(|| Some((s.parse().ok()?, i.parse().ok()?)))?
}

/// Writes one stream of an ensemble in chunks.
pub struct ChunkWriter {
    dir: PathBuf,
    stream: usize,
    layout: Layout,
    metadata: BTreeMap<String, String>,
    per_chunk: usize,
    x: Vec<f64>,
    floats: Vec<Vec<f64>>,
    ints: Vec<Vec<i64>>,
    index: usize,
    written: usize,
}

impl ChunkWriter {
    /// A writer of stream `stream` into `dir` (which must exist), `metadata` in every chunk,
    /// chunks of about [`CHUNK_BYTES`].
    ///
    /// # Panics
    /// If `layout.dtype` is not a floating-point type or `metadata` uses a per-chunk key.
    pub fn new(dir: &Path, stream: usize, layout: Layout, metadata: BTreeMap<String, String>) -> Self {
        let per_chunk = (CHUNK_BYTES / (layout.dof() * layout.dtype.size()).max(1)).max(1);
        Self::with_chunk_len(dir, stream, layout, metadata, per_chunk)
    }

    /// The same with `per_chunk` configurations per chunk.
    ///
    /// # Panics
    /// As [`ChunkWriter::new`], or if `per_chunk` is zero.
    #[track_caller]
    pub fn with_chunk_len(
        dir: &Path,
        stream: usize,
        layout: Layout,
        mut metadata: BTreeMap<String, String>,
        per_chunk: usize,
    ) -> Self {
        assert!(layout.dtype != Dtype::I64, "configurations are F32 or F64");
        assert!(per_chunk > 0, "chunks of at least one configuration");
        assert!(PER_CHUNK.iter().all(|k| !metadata.contains_key(*k)), "metadata must not use {PER_CHUNK:?}");
        metadata.insert(FORMAT_KEY.into(), FORMAT.into());
        ChunkWriter {
            dir: dir.to_path_buf(),
            stream,
            floats: vec![Vec::new(); layout.floats.len()],
            ints: vec![Vec::new(); layout.ints.len()],
            layout,
            metadata,
            per_chunk,
            x: Vec::new(),
            index: 0,
            written: 0,
        }
    }

    /// Appends one configuration with its column values (in the layout's order); writes a
    /// chunk when one is full.
    ///
    /// # Errors
    /// The file and the OS error if a chunk cannot be written.
    ///
    /// # Panics
    /// If a length does not match the layout.
    #[track_caller]
    pub fn push(&mut self, x: &[f64], floats: &[f64], ints: &[i64]) -> Result<(), String> {
        assert_eq!(x.len(), self.layout.dof(), "configuration of the wrong size");
        assert_eq!((floats.len(), ints.len()), (self.floats.len(), self.ints.len()), "columns");
        self.x.extend_from_slice(x);
        self.floats.iter_mut().zip(floats).for_each(|(c, &v)| c.push(v));
        self.ints.iter_mut().zip(ints).for_each(|(c, &v)| c.push(v));
        if self.pending() == self.per_chunk {
            self.flush()?;
        }
        Ok(())
    }

    /// Configurations buffered, not yet written.
    fn pending(&self) -> usize {
        self.x.len() / self.layout.dof().max(1)
    }

    /// Configurations written to disk so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Writes the buffered configurations as a chunk (nothing if none).
    ///
    /// # Errors
    /// As [`ChunkWriter::push`].
    pub fn flush(&mut self) -> Result<(), String> {
        let count = self.pending();
        if count == 0 {
            return Ok(());
        }
        let mut st = SafeTensors { metadata: self.metadata.clone(), ..Default::default() };
        for (k, v) in [("stream", self.stream), ("index", self.index), ("first", self.written), ("count", count)] {
            st.metadata.insert(k.into(), v.to_string());
        }
        let mut shape = vec![count];
        shape.extend_from_slice(&self.layout.shape);
        let x = match self.layout.dtype {
            Dtype::F32 => TensorData::from_f32(&shape, &self.x.iter().map(|&v| v as f32).collect::<Vec<_>>()),
            _ => TensorData::from_f64(&shape, &self.x),
        };
        st.insert("x".into(), x);
        for (name, c) in self.layout.floats.iter().zip(&self.floats) {
            st.insert(name.clone(), TensorData::from_f64(&[count], c));
        }
        for (name, c) in self.layout.ints.iter().zip(&self.ints) {
            st.insert(name.clone(), TensorData::from_i64(&[count], c));
        }
        st.write(&self.dir.join(chunk_name(self.stream, self.index))).map_err(|e| e.to_string())?;
        self.index += 1;
        self.written += count;
        self.x.clear();
        self.floats.iter_mut().for_each(Vec::clear);
        self.ints.iter_mut().for_each(Vec::clear);
        Ok(())
    }

    /// Writes what is left; returns the number of configurations written in all.
    ///
    /// # Errors
    /// As [`ChunkWriter::push`].
    pub fn finish(mut self) -> Result<usize, String> {
        self.flush()?;
        Ok(self.written)
    }
}

/// One chunk read back.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// The file.
    pub path: PathBuf,
    /// Its stream (chain).
    pub stream: usize,
    /// Position of its first configuration in the stream.
    pub first: usize,
    /// Configurations.
    pub count: usize,
    /// The configurations, `count * dof` values (widened to f64: exact).
    pub x: Vec<f64>,
    /// `F64` columns by name.
    pub floats: BTreeMap<String, Vec<f64>>,
    /// `I64` columns by name.
    pub ints: BTreeMap<String, Vec<i64>>,
}

/// An ensemble directory whose chunk names and first chunk have been checked.
#[derive(Clone, Debug)]
pub struct Ensemble {
    /// The directory.
    pub dir: PathBuf,
    /// The run's metadata (the per-chunk keys removed).
    pub metadata: BTreeMap<String, String>,
    /// The layout of every chunk.
    pub layout: Layout,
    /// For each stream `0..`, its chunk files in order.
    pub streams: Vec<Vec<PathBuf>>,
    /// [`MANIFEST_FILE`]'s rows, per stream and chunk like `streams`, when the run finished.
    pub manifest: Option<Vec<Vec<ManifestEntry>>>,
}

/// The manifest's rows arranged like `streams`, each chunk of the directory listed once.
fn match_manifest(
    dir: &Path,
    streams: &[Vec<PathBuf>],
    rows: Vec<ManifestEntry>,
) -> Result<Vec<Vec<ManifestEntry>>, String> {
    let mut by: BTreeMap<(usize, usize), ManifestEntry> = BTreeMap::new();
    for r in rows {
        if let Some(old) = by.insert((r.stream, r.index), r) {
            return Err(format!("{}: {} is listed twice", dir.join(MANIFEST_FILE).display(), old.file));
        }
    }
    let mut out = Vec::with_capacity(streams.len());
    for (s, files) in streams.iter().enumerate() {
        let mut rows = Vec::with_capacity(files.len());
        for i in 0..files.len() {
            let row = by.remove(&(s, i)).ok_or_else(|| {
                format!(
                    "{}: {} is not listed in {MANIFEST_FILE} (a file of another run?)",
                    dir.display(),
                    chunk_name(s, i)
                )
            })?;
            rows.push(row);
        }
        out.push(rows);
    }
    if let Some(row) = by.into_values().next() {
        return Err(format!(
            "{}: {} is listed in {MANIFEST_FILE} but missing: the ensemble is incomplete",
            dir.display(),
            row.file
        ));
    }
    Ok(out)
}

impl Ensemble {
    /// Lists the chunks of the ensemble in `dir` and reads the first one (and the manifest,
    /// when the run finished).
    ///
    /// # Errors
    /// A message naming the directory or file: not a directory, no chunks, a stream or
    /// chunk missing from the numbering, a first chunk that is not a valid chunk; with a
    /// manifest, one that cannot be parsed, a chunk it lists that is missing or a chunk it
    /// does not list.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read ensemble directory {}: {e}", dir.display()))?;
        let mut found: BTreeMap<usize, BTreeMap<usize, PathBuf>> = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read ensemble directory {}: {e}", dir.display()))?;
            if let Some((s, i)) = entry.file_name().to_str().and_then(parse_name) {
                if found.entry(s).or_default().insert(i, entry.path()).is_some() {
                    return Err(format!("{}: two files for chunk {i} of stream {s}", dir.display()));
                }
            }
        }
        if found.is_empty() {
            return Err(format!(
                "{}: no ensemble chunks (chunk-s*-*.safetensors) here; `latflow sample --save` and \
                 `latflow hmc --save` write them",
                dir.display()
            ));
        }
        let mut streams = Vec::new();
        for (expect, (s, chunks)) in found.into_iter().enumerate() {
            if s != expect {
                return Err(format!("{}: stream {expect} has no chunk (streams up to {s} do)", dir.display()));
            }
            let mut files = Vec::new();
            for (expect, (i, path)) in chunks.into_iter().enumerate() {
                if i != expect {
                    return Err(format!("{}: chunk {expect} of stream {s} is missing", dir.display()));
                }
                files.push(path);
            }
            streams.push(files);
        }
        let first = &streams[0][0];
        let st = SafeTensors::read(first).map_err(|e| e.to_string())?;
        let err = |m: String| format!("{}: {m}", first.display());
        if st.metadata.get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
            return Err(err(format!(
                "not a {FORMAT} chunk (metadata {FORMAT_KEY:?} is {:?})",
                st.metadata.get(FORMAT_KEY)
            )));
        }
        let x = st.tensor("x").map_err(|e| err(e.to_string()))?;
        if !x.is_float() || x.shape.is_empty() {
            return Err(err(format!(
                "tensor 'x' must be F32 or F64 of shape (count, ...), got {} {:?}",
                x.dtype, x.shape
            )));
        }
        let mut layout = Layout { shape: x.shape[1..].to_vec(), dtype: x.dtype, floats: vec![], ints: vec![] };
        for (name, t) in st.tensors.iter().filter(|(n, _)| *n != "x") {
            match t.dtype {
                Dtype::I64 => layout.ints.push(name.clone()),
                _ => layout.floats.push(name.clone()),
            }
        }
        let mut metadata = st.metadata.clone();
        PER_CHUNK.iter().for_each(|k| {
            metadata.remove(*k);
        });
        let manifest = match read_manifest(dir)? {
            None => None,
            Some(rows) => Some(match_manifest(dir, &streams, rows)?),
        };
        Ok(Ensemble { dir: dir.to_path_buf(), metadata, layout, streams, manifest })
    }

    /// Chunk files in all streams.
    pub fn n_chunks(&self) -> usize {
        self.streams.iter().map(Vec::len).sum()
    }

    /// Reads chunk `index` of `stream` and checks it against the ensemble: the same run
    /// metadata, layout, and `first` = `expected_first` (the configurations before it).
    ///
    /// # Errors
    /// A message naming the file and what does not fit.
    ///
    /// # Panics
    /// If there is no such stream or chunk.
    pub fn read(&self, stream: usize, index: usize, expected_first: usize) -> Result<Chunk, String> {
        let path = &self.streams[stream][index];
        let err = |m: String| format!("{}: {m}", path.display());
        let listed = self.manifest.as_ref().map(|m| &m[stream][index]);
        let st = match listed {
            None => SafeTensors::read(path).map_err(|e| e.to_string())?,
            Some(row) => {
                // the size before reading (a damaged or replaced file), then the digest
                let size = std::fs::metadata(path).map_err(|e| err(e.to_string()))?.len();
                if size != row.bytes {
                    return Err(err(format!(
                        "{size} bytes, but {MANIFEST_FILE} says {}: damaged or replaced",
                        row.bytes
                    )));
                }
                let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
                if crate::digest::sha256_hex(&bytes) != row.sha256 {
                    return Err(err(format!("its SHA-256 differs from {MANIFEST_FILE}'s: damaged or replaced")));
                }
                SafeTensors::from_bytes(&bytes).map_err(|e| err(e.to_string()))?
            }
        };
        let num = |k: &str| -> Result<usize, String> {
            st.metadata
                .get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| err(format!("metadata {k:?} missing or not a number")))
        };
        let (s, i, first, count) = (num("stream")?, num("index")?, num("first")?, num("count")?);
        if let Some(row) = listed.filter(|r| (r.first, r.count) != (first, count)) {
            return Err(err(format!(
                "configurations {first}..{} of stream {stream}, {MANIFEST_FILE} says {}..{}",
                first + count,
                row.first,
                row.first + row.count
            )));
        }
        if (s, i) != (stream, index) {
            return Err(err(format!(
                "metadata says stream {s} chunk {i}; the file name says stream {stream} chunk {index}"
            )));
        }
        if first != expected_first {
            return Err(err(format!(
                "starts at configuration {first} of stream {stream}, but the chunks before it end at {expected_first}"
            )));
        }
        for (k, v) in &st.metadata {
            if !PER_CHUNK.contains(&k.as_str()) && self.metadata.get(k) != Some(v) {
                return Err(err(format!(
                    "metadata {k:?} = {v:?} differs from the first chunk's {:?}",
                    self.metadata.get(k)
                )));
            }
        }
        if let Some(k) = self.metadata.keys().find(|k| !st.metadata.contains_key(*k)) {
            return Err(err(format!("metadata {k:?} of the first chunk is missing")));
        }
        let x = st.tensor("x").map_err(|e| err(e.to_string()))?;
        let mut shape = vec![count];
        shape.extend_from_slice(&self.layout.shape);
        if x.dtype != self.layout.dtype || x.shape != shape {
            return Err(err(format!(
                "tensor 'x' is {} {:?}, expected {} {shape:?}",
                x.dtype, x.shape, self.layout.dtype
            )));
        }
        let names = self.layout.floats.iter().chain(&self.layout.ints).count() + 1;
        if st.tensors.len() != names {
            return Err(err(format!("holds {} tensors, the first chunk {names}", st.tensors.len())));
        }
        let mut chunk = Chunk {
            path: path.clone(),
            stream,
            first,
            count,
            x: x.to_f64(),
            floats: BTreeMap::new(),
            ints: BTreeMap::new(),
        };
        for (name, want) in
            self.layout.floats.iter().map(|n| (n, Dtype::F64)).chain(self.layout.ints.iter().map(|n| (n, Dtype::I64)))
        {
            let t = st.tensor(name).map_err(|e| err(e.to_string()))?;
            if t.shape != [count] || (t.dtype == Dtype::I64) != (want == Dtype::I64) {
                return Err(err(format!(
                    "column '{name}' is {} {:?}, expected ({count},) like the first chunk",
                    t.dtype, t.shape
                )));
            }
            if let Some(v) = t.to_i64() {
                chunk.ints.insert(name.clone(), v);
            } else {
                chunk.floats.insert(name.clone(), t.to_f64());
            }
        }
        Ok(chunk)
    }

    /// Whether [`MANIFEST_FILE`] is there: the run that wrote the ensemble finished.
    pub fn is_complete(&self) -> bool {
        self.manifest.is_some()
    }

    /// Visits every chunk of every stream in order, one in memory at a time.
    ///
    /// # Errors
    /// The first error of [`Ensemble::read`] or of `visit`.
    pub fn for_each_chunk(&self, mut visit: impl FnMut(&Chunk) -> Result<(), String>) -> Result<(), String> {
        for (s, files) in self.streams.iter().enumerate() {
            let mut next = 0;
            for i in 0..files.len() {
                let c = self.read(s, i, next)?;
                next += c.count;
                visit(&c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("latflow-io-ens-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn layout() -> Layout {
        Layout { shape: vec![2, 3], dtype: Dtype::F32, floats: vec!["action".into()], ints: vec!["chain".into()] }
    }

    fn write(dir: &Path, streams: usize, n: usize, per: usize) {
        let meta = BTreeMap::from([("theory".to_string(), "phi4".to_string())]);
        for s in 0..streams {
            let mut w = ChunkWriter::with_chunk_len(dir, s, layout(), meta.clone(), per);
            for i in 0..n {
                let x: Vec<f64> = (0..6).map(|k| (s * 1000 + i * 10 + k) as f64 * 0.5).collect();
                w.push(&x, &[i as f64 + 0.25], &[i as i64]).unwrap();
            }
            assert_eq!(w.finish().unwrap(), n);
        }
    }

    #[test]
    fn round_trips_in_order_across_chunks_and_streams() {
        let dir = tmp("rt");
        write(&dir, 2, 10, 4);
        let e = Ensemble::open(&dir).unwrap();
        assert_eq!((e.streams.len(), e.n_chunks(), &e.layout), (2, 6, &layout()));
        assert_eq!(e.metadata.get("theory").unwrap(), "phi4");
        let mut seen = Vec::new();
        e.for_each_chunk(|c| {
            for k in 0..c.count {
                let i = c.first + k;
                assert_eq!(c.x[k * 6], (c.stream * 1000 + i * 10) as f64 * 0.5);
                assert_eq!((c.floats["action"][k], c.ints["chain"][k]), (i as f64 + 0.25, i as i64));
                seen.push((c.stream, i));
            }
            Ok(())
        })
        .unwrap();
        let want: Vec<(usize, usize)> = (0..2).flat_map(|s| (0..10).map(move |i| (s, i))).collect();
        assert_eq!(seen, want);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn missing_mismatched_or_foreign_chunks_are_clear_errors() {
        let dir = tmp("bad");
        assert!(Ensemble::open(&dir).unwrap_err().contains("no ensemble chunks"));
        assert!(Ensemble::open(&dir.join("nope")).unwrap_err().contains("cannot read ensemble directory"));
        write(&dir, 1, 10, 4);
        std::fs::remove_file(dir.join(chunk_name(0, 1))).unwrap();
        assert!(Ensemble::open(&dir).unwrap_err().contains("chunk 1 of stream 0 is missing"));
        // a chunk of another run renamed into the gap
        let other = tmp("other");
        let meta = BTreeMap::from([("theory".to_string(), "u1".to_string())]);
        let mut w = ChunkWriter::with_chunk_len(&other, 0, layout(), meta, 4);
        for i in 0..8 {
            w.push(&[0.0; 6], &[0.0], &[i]).unwrap();
        }
        w.finish().unwrap();
        std::fs::copy(other.join(chunk_name(0, 1)), dir.join(chunk_name(0, 1))).unwrap();
        let e = Ensemble::open(&dir).unwrap();
        let err = e.for_each_chunk(|_| Ok(())).unwrap_err();
        assert!(err.contains("\"theory\" = \"u1\" differs"), "{err}");
        // a stream without its first chunks
        std::fs::copy(other.join(chunk_name(0, 0)), dir.join(chunk_name(2, 0))).unwrap();
        assert!(Ensemble::open(&dir).unwrap_err().contains("stream 1 has no chunk"));
        // a file that is not a chunk
        let junk = tmp("junk");
        std::fs::write(junk.join(chunk_name(0, 0)), b"not a safetensors file").unwrap();
        assert!(Ensemble::open(&junk).is_err());
        for d in [dir, other, junk] {
            std::fs::remove_dir_all(d).ok();
        }
    }

    /// A finished ensemble's manifest lists every chunk; a chunk removed, added, resized or
    /// changed in one byte (same size) is then an error naming it, and a damaged manifest too.
    #[test]
    fn the_manifest_of_a_finished_ensemble_catches_missing_extra_and_changed_chunks() {
        let dir = tmp("manifest");
        write(&dir, 3, 10, 4);
        assert!(!Ensemble::open(&dir).unwrap().is_complete());
        assert_eq!(write_manifest(&dir).unwrap(), 30);
        let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
        assert_eq!(text.lines().count(), 1 + 9, "{text}");
        assert!(text.lines().nth(2).unwrap().starts_with("chunk-s0000-000001.safetensors,0,1,4,4,"), "{text}");
        let e = Ensemble::open(&dir).unwrap();
        assert!(e.is_complete());
        let mut n = 0;
        e.for_each_chunk(|c| {
            n += c.count;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 30);
        assert!(write_manifest(&dir).unwrap_err().contains("already has a manifest.csv"));
        let read_all = || Ensemble::open(&dir).and_then(|e| e.for_each_chunk(|_| Ok(())));
        // one byte of the data section changed, size unchanged
        let victim = dir.join(chunk_name(1, 2));
        let good = std::fs::read(&victim).unwrap();
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(&victim, &bad).unwrap();
        let err = read_all().unwrap_err();
        assert!(err.contains("chunk-s0001-000002") && err.contains("SHA-256 differs"), "{err}");
        bad.push(0);
        std::fs::write(&victim, &bad).unwrap();
        assert!(read_all().unwrap_err().contains("bytes, but manifest.csv says"));
        std::fs::write(&victim, &good).unwrap();
        read_all().unwrap();
        // the last stream's last chunk, then the whole last stream, gone
        let last = dir.join(chunk_name(2, 2));
        let kept = std::fs::read(&last).unwrap();
        std::fs::remove_file(&last).unwrap();
        let err = read_all().unwrap_err();
        assert!(err.contains("chunk-s0002-000002.safetensors is listed in manifest.csv but missing"), "{err}");
        for i in 0..2 {
            std::fs::remove_file(dir.join(chunk_name(2, i))).unwrap();
        }
        assert!(read_all().unwrap_err().contains("chunk-s0002-000000.safetensors is listed"));
        // a chunk the manifest does not list
        let other = tmp("manifest-other");
        write(&other, 4, 10, 4);
        for i in 0..3 {
            std::fs::copy(other.join(chunk_name(2, i)), dir.join(chunk_name(2, i))).unwrap();
        }
        std::fs::copy(other.join(chunk_name(3, 0)), dir.join(chunk_name(3, 0))).unwrap();
        let err = read_all().unwrap_err();
        assert!(err.contains("chunk-s0003-000000.safetensors is not listed in manifest.csv"), "{err}");
        std::fs::remove_file(dir.join(chunk_name(3, 0))).unwrap();
        assert_eq!(std::fs::read(&last).unwrap(), kept, "the same writer wrote the same chunk");
        read_all().unwrap();
        // damaged manifests
        let m = dir.join(MANIFEST_FILE);
        for (bad, want) in [
            ("nonsense\n", "not a manifest"),
            (
                "file,stream,index,first,count,bytes,sha256\nchunk-s0000-000000.safetensors,0,0,0,4\n",
                "expected 7 fields",
            ),
            (
                "file,stream,index,first,count,bytes,sha256\nchunk-s0000-000000.safetensors,0,x,0,4,1,a\n",
                "not a number",
            ),
            (
                "file,stream,index,first,count,bytes,sha256\nchunk-s0000-000000.safetensors,1,0,0,4,1,a\n",
                "the file name is not",
            ),
            (
                "file,stream,index,first,count,bytes,sha256\nchunk-s0000-000000.safetensors,0,0,0,4,1,XYZ\n",
                "SHA-256 is not",
            ),
        ] {
            std::fs::write(&m, bad).unwrap();
            let err = Ensemble::open(&dir).unwrap_err();
            assert!(err.contains(want), "{bad:?}: {err}");
        }
        for d in [dir, other] {
            std::fs::remove_dir_all(d).ok();
        }
    }

    #[test]
    fn chunk_names_parse_back() {
        assert_eq!(parse_name(&chunk_name(3, 12)), Some((3, 12)));
        for bad in ["chunk-s-000001.safetensors", "chunk-s0001-x.safetensors", ".chunk-s0000-000000.safetensors.tmp1"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
