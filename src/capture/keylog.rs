//! Key log files (`SSLKEYLOGFILE`) read for passive capture: whole for `mf import`, and
//! followed as they grow for `mf record --interface` (clients append a session's secrets
//! as they make it, so the keys of a live connection arrive while it is captured).
//!
//! The file's secrets only go to the passive engine; nothing here prints them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A key log file read from where the last read stopped.
pub struct KeyLogFile {
    path: PathBuf,
    offset: u64,
    /// The last line read, not yet ended (the writer is in the middle of it).
    partial: Vec<u8>,
}

impl KeyLogFile {
    /// A reader of `path` from its start; the file need not exist yet.
    pub fn new(path: &Path) -> Self {
        KeyLogFile {
            path: path.to_path_buf(),
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The complete lines appended since the last call (empty when none). A file that was
    /// truncated or replaced is read again from its start.
    ///
    /// # Errors
    /// The file cannot be opened or read (a missing file is not an error while following:
    /// the caller decides).
    pub fn read_new(&mut self) -> io::Result<Vec<u8>> {
        let mut f = File::open(&self.path)?;
        let len = f.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            return Ok(Vec::new());
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let mut data = std::mem::take(&mut self.partial);
        let before = data.len();
        f.take(len - self.offset).read_to_end(&mut data)?;
        self.offset += (data.len() - before) as u64;
        match data.iter().rposition(|b| *b == b'\n') {
            Some(end) => {
                self.partial = data.split_off(end + 1);
                Ok(data)
            }
            None => {
                self.partial = data;
                Ok(Vec::new())
            }
        }
    }

    /// What is left of an unended last line (at the end of a capture, it is complete).
    pub fn take_partial(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn follows_a_growing_file_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.log");
        let mut k = KeyLogFile::new(&path);
        assert!(k.read_new().is_err(), "missing file");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"A 1 2\nB 3").unwrap();
        assert_eq!(k.read_new().unwrap(), b"A 1 2\n");
        assert_eq!(k.read_new().unwrap(), b"");
        f.write_all(b" 4\nC").unwrap();
        assert_eq!(k.read_new().unwrap(), b"B 3 4\n");
        assert_eq!(k.take_partial(), b"C");
        drop(f);
        std::fs::write(&path, b"D\n").unwrap();
        assert_eq!(
            k.read_new().unwrap(),
            b"D\n",
            "a truncated file is read again"
        );
    }
}
