//! State files under `state_dir`, written atomically: a temporary file in the
//! same directory, fsync, rename over the old one, fsync of the directory.
//! A crash leaves either the old or the new content, never a torn file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A state file that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Replaces `path` with `bytes` atomically and durably (mode 0600: state may
/// hold secrets): a power cut leaves the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_file(path, bytes, true)
}

/// Replaces `path` with `bytes` atomically but without waiting for the disk:
/// the new content survives a crash of the agent at once, and a power cut
/// once [`sync`] returned. Until then a power cut may leave the old content,
/// or a short file that readers must detect.
pub fn write_unsynced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_file(path, bytes, false)
}

/// Makes a file written by [`write_unsynced`] durable: fsync of the file,
/// then of its directory.
pub fn sync(path: &Path) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(io(path))
}

fn write_file(path: &Path, bytes: &[u8], durable: bool) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let open = |tmp: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(tmp)
    };
    let result = (|| {
        let mut f = match open(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                open(&tmp)?
            }
            other => other?,
        };
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durable {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}

/// Serialises `value` as JSON into `path` atomically.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value).expect("state types serialise");
    write_atomic(path, &bytes)
}

/// Reads JSON state. A missing file is `None`; an unreadable or corrupt one is
/// moved aside to `<name>.corrupt`, reported, and read as `None`.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(path = %path.display(), "reading state file: {e}");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            let mut aside = path.as_os_str().to_owned();
            aside.push(".corrupt");
            let moved = std::fs::rename(path, &aside).is_ok();
            tracing::error!(
                path = %path.display(),
                moved_to = %PathBuf::from(&aside).display(),
                moved,
                "state file is corrupt ({e}); starting without it"
            );
            None
        }
    }
}

/// A state file that is rewritten whole on every change. A failing write is
/// logged once (and its recovery once); the agent goes on in memory.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    failing: bool,
}

impl StateFile {
    /// The file at `path` (not read or created yet).
    pub fn new(path: PathBuf) -> Self {
        StateFile { path, failing: false }
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `value` atomically; errors are logged, not returned.
    pub fn save<T: Serialize>(&mut self, value: &T) {
        match save_json(&self.path, value) {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(path = %self.path.display(), "state file writable again");
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::error!("cannot save state, keeping it in memory only: {e}");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state.json");
        save_json(&p, &vec![1, 2, 3]).unwrap();
        assert_eq!(load_json::<Vec<i32>>(&p), Some(vec![1, 2, 3]));
        save_json(&p, &vec![4]).unwrap();
        assert_eq!(load_json::<Vec<i32>>(&p), Some(vec![4]));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left");
    }

    #[test]
    fn unsynced_write_then_sync() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new/spooled.json");
        write_unsynced(&p, b"[1]").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"[1]");
        sync(&p).unwrap();
        assert!(sync(&dir.path().join("missing.json")).is_err());
    }

    #[test]
    fn missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        assert_eq!(load_json::<Vec<i32>>(&p), None);
        std::fs::write(&p, b"{trunc").unwrap();
        assert_eq!(load_json::<Vec<i32>>(&p), None);
        assert!(!p.exists());
        assert!(dir.path().join("state.json.corrupt").exists());
    }

    #[test]
    fn unwritable_dir_is_an_error() {
        let e = write_atomic(Path::new("/proc/hostbeat-test/x.json"), b"x").unwrap_err();
        assert!(e.to_string().starts_with("/proc/hostbeat-test"), "{e}");
    }
}
