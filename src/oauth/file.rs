//! The refresh-token file: read (surrounding whitespace trimmed) and
//! replaced atomically, so that a crash mid-write leaves the old token or
//! the new one, never half of one: a temporary file in the same directory,
//! mode 0600 from its creation, written, fsynced, renamed over the old one,
//! and the directory fsynced. It must not log the token.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Where one `[oauth]` section keeps its refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenFile {
    path: PathBuf,
}

impl RefreshTokenFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RefreshTokenFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The token, or `None` when the file is missing or empty.
    pub fn read(&self) -> io::Result<Option<String>> {
        match fs::read_to_string(&self.path) {
            Ok(text) => {
                let token = text.trim();
                Ok((!token.is_empty()).then(|| token.to_string()))
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Replaces the file's content with `token` (plus a newline), atomically.
    pub fn write(&self, token: &str) -> io::Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .ok_or_else(|| io::Error::other("the refresh token path names no file"))?;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let temp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            hex::encode(random)
        ));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(token.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&temp, &self.path)
        })();
        if let Err(err) = written {
            let _ = fs::remove_file(&temp);
            return Err(err);
        }
        // The rename is durable only once the directory is.
        File::open(&dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_missing_or_blank_file_holds_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = RefreshTokenFile::new(dir.path().join("refresh"));
        assert_eq!(file.read().unwrap(), None);
        fs::write(file.path(), "\n  \n").unwrap();
        assert_eq!(file.read().unwrap(), None);
        fs::write(file.path(), "  rt-1\n").unwrap();
        assert_eq!(file.read().unwrap().as_deref(), Some("rt-1"));
    }

    #[test]
    fn a_write_replaces_the_file_whole_with_mode_0600_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refresh");
        fs::write(&path, "old-token\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let file = RefreshTokenFile::new(&path);
        file.write("new-token").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new-token\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the old file's 0644 must not survive");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["refresh"], "no temporary file is left behind");
    }

    #[test]
    fn a_failed_write_keeps_the_old_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refresh");
        fs::write(&path, "old-token\n").unwrap();
        // A directory where the file should be renamed to: rename fails.
        let blocked = RefreshTokenFile::new(dir.path().join("sub"));
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub").join("x"), "").unwrap();
        assert!(blocked.write("new").is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "old-token\n");
        let temps = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(temps, 0);
    }
}
