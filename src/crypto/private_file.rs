//! Files that hold private keys: created 0600 with `create_new` (two processes starting at once
//! never overwrite each other's key) and refused when group or others can read them.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Private-file failures.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    /// The file or its directory could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is readable by group or others: the key may already be out.
    #[error(
        "key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PrivateFileError + '_ {
    move |source| PrivateFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `make()` to `path` (0600) unless the file exists. A parent directory it has to
/// create is made 0700; one that exists is left as it is (it may be shared, such as `/etc`).
pub fn create_if_missing(
    path: &Path,
    make: impl FnOnce() -> String,
) -> Result<(), PrivateFileError> {
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))
            .map_err(io(parent))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(make().as_bytes()).map_err(io(path))?;
            file.sync_all().map_err(io(path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Replaces `path` whole with `contents` (0600): written beside it, synced, then renamed over
/// it, so a reader sees the old file or the new one, never a torn one. The directory must exist.
pub fn replace(path: &Path, contents: &[u8]) -> Result<(), PrivateFileError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    // A leftover from a write that was killed is ours to discard.
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io(&temporary))?;
    file.write_all(contents).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io(path))
}

/// Reads a private file, refusing one that group or others may read.
pub fn read(path: &Path) -> Result<String, PrivateFileError> {
    let mode = std::fs::metadata(path)
        .map_err(io(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::Exposed {
            path: path.to_owned(),
            mode: mode & 0o777,
        });
    }
    std::fs::read_to_string(path).map_err(io(path))
}
