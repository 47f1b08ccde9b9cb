//! Small CSV tables: a header row and rows of values, written atomically (temp file + rename)
//! so an interrupted write never leaves a truncated table behind.
//!
//! ```
//! use latflow_io::csv::Table;
//! let mut t = Table::new(&["quantity", "value", "error"]);
//! t.row(&["chi2", "0.75", "0.01"]);
//! assert_eq!(t.to_string(), "quantity,value,error\nchi2,0.75,0.01\n");
//! ```

use std::fmt;
use std::io::Write;
use std::path::Path;

/// A CSV table built in memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column names.
    pub fn new(header: &[&str]) -> Self {
        Table { header: header.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    /// Appends a row.
    ///
    /// # Panics
    /// If the row's length differs from the header's.
    #[track_caller]
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) {
        assert_eq!(
            cells.len(),
            self.header.len(),
            "csv row of {} cells for {} columns",
            cells.len(),
            self.header.len()
        );
        self.rows.push(cells.iter().map(|c| c.as_ref().to_string()).collect());
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the table to `path` atomically; the error names the path.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        write_atomic(path, self.to_string().as_bytes())
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.header.join(","))?;
        for r in &self.rows {
            writeln!(f, "{}", r.join(","))?;
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename; the error
/// names the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let name = path.file_name().ok_or_else(|| format!("cannot write {}: not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_names_the_path_on_error() {
        let dir = std::env::temp_dir().join(format!("latflow-io-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut t = Table::new(&["a", "b"]);
        t.row(&["1", "2"]);
        let p = dir.join("t.csv");
        t.write(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a,b\n1,2\n");
        let bad = dir.join("no/such/dir/t.csv");
        assert!(t.write(&bad).unwrap_err().contains("no/such/dir/t.csv"));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temp file left behind");
        std::fs::remove_dir_all(&dir).ok();
    }
}
