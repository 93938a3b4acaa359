//! The local directory store (embedded mode).
//!
//! A put streams into `<root>/.uploads/<id>~<key>` and renames the file into place once it is
//! complete and synced, so readers never see a partial object. Upload files that outlive their
//! writer (a crash) are what [`ObjectStore::pending_uploads`] reports.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{
    ByteRange, GetObject, KeyPrefix, ObjectKey, ObjectMeta, ObjectStore, PendingUpload, StoreError,
};

/// Directory (under the root) of uploads in progress; keys cannot name it (dot segments are
/// refused by [`ObjectKey::parse`]).
const UPLOADS_DIR: &str = ".uploads";

/// Separates the upload id from the encoded key in an upload file name.
const UPLOAD_SEPARATOR: char = '~';

/// Stands for `/` in an upload file name; not a key character, so the encoding is reversible.
const SLASH_STAND_IN: char = '!';

/// Copy buffer: large enough that a put is not dominated by system calls.
const COPY_BUFFER: usize = 256 * 1024;

/// Objects as files under a root directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// A store rooted at `root` (created on first use).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn object_path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn uploads_dir(&self) -> PathBuf {
        self.root.join(UPLOADS_DIR)
    }

    async fn ensure_dir(&self, dir: &Path) -> Result<(), StoreError> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| io_err("create directory", dir, source))?;
        Ok(())
    }

    async fn write_upload(
        &self,
        key: &ObjectKey,
        upload_path: &Path,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StoreError> {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(upload_path)
            .await
            .map_err(|source| io_err("create", upload_path, source))?;
        let mut buffer = vec![0u8; COPY_BUFFER];
        let mut written = 0u64;
        loop {
            let n = body
                .read(&mut buffer)
                .await
                .map_err(|source| StoreError::Body {
                    key: key.clone(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            file.write_all(&buffer[..n])
                .await
                .map_err(|source| io_err("write", upload_path, source))?;
            written += n as u64;
        }
        // The rename below must publish complete bytes even across a power cut.
        file.sync_all()
            .await
            .map_err(|source| io_err("sync", upload_path, source))?;
        Ok(written)
    }
}

#[async_trait]
impl ObjectStore for FsStore {
    fn describe(&self) -> String {
        format!("fs:{}", self.root.display())
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.ensure_dir(&self.uploads_dir()).await?;
        let meta = tokio::fs::metadata(&self.root)
            .await
            .map_err(|source| io_err("stat", &self.root, source))?;
        if meta.permissions().readonly() {
            return Err(io_err(
                "write to",
                &self.root,
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, "read-only"),
            ));
        }
        Ok(())
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StoreError> {
        let uploads = self.uploads_dir();
        self.ensure_dir(&uploads).await?;
        let encoded = key.as_str().replace('/', &SLASH_STAND_IN.to_string());
        let upload_path = uploads.join(format!(
            "{}{UPLOAD_SEPARATOR}{encoded}",
            uuid::Uuid::new_v4().simple()
        ));
        let result = async {
            let written = self.write_upload(key, &upload_path, body).await?;
            let target = self.object_path(key);
            if let Some(parent) = target.parent() {
                self.ensure_dir(parent).await?;
            }
            tokio::fs::rename(&upload_path, &target)
                .await
                .map_err(|source| io_err("publish", &target, source))?;
            Ok(written)
        }
        .await;
        if result.is_err() {
            // Best effort: the failure being returned matters more than a cleanup failure,
            // and the periodic sweep removes what is left.
            let _ = tokio::fs::remove_file(&upload_path).await;
        }
        result
    }

    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<ByteRange>,
    ) -> Result<GetObject, StoreError> {
        let path = self.object_path(key);
        let mut file =
            tokio::fs::File::open(&path)
                .await
                .map_err(|source| match source.kind() {
                    std::io::ErrorKind::NotFound => StoreError::NotFound(key.clone()),
                    _ => io_err("open", &path, source),
                })?;
        let size = file
            .metadata()
            .await
            .map_err(|source| io_err("stat", &path, source))?
            .len();
        let (offset, len) = match range {
            None => (0, size),
            Some(range) => range
                .resolve(size)
                .ok_or(StoreError::RangeNotSatisfiable { size })?,
        };
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .await
                .map_err(|source| io_err("seek", &path, source))?;
        }
        Ok(GetObject {
            size,
            offset,
            len,
            body: Box::pin(file.take(len)),
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        let path = self.object_path(key);
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => StoreError::NotFound(key.clone()),
                _ => io_err("stat", &path, source),
            })?;
        Ok(ObjectMeta {
            key: key.clone(),
            size: meta.len(),
        })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let path = self.object_path(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(io_err("delete", &path, source)),
        }
    }

    async fn list(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut found = Vec::new();
        let mut pending = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(io_err("list", &dir, source)),
            };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|source| io_err("list", &dir, source))?
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let key = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let file_type = entry
                    .file_type()
                    .await
                    .map_err(|source| io_err("stat", &entry.path(), source))?;
                if file_type.is_dir() {
                    pending.push((entry.path(), key));
                } else if file_type.is_file() && key.starts_with(prefix.as_str()) {
                    // Files that are not valid keys were not written by this store; skip them.
                    if let Ok(key) = ObjectKey::parse(&key) {
                        let size = entry
                            .metadata()
                            .await
                            .map_err(|source| io_err("stat", &entry.path(), source))?
                            .len();
                        found.push(ObjectMeta { key, size });
                    }
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn pending_uploads(&self, prefix: &KeyPrefix) -> Result<Vec<PendingUpload>, StoreError> {
        let dir = self.uploads_dir();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(io_err("list", &dir, source)),
        };
        let mut found = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|source| io_err("list", &dir, source))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((_, encoded)) = name.split_once(UPLOAD_SEPARATOR) else {
                continue;
            };
            let Ok(key) = ObjectKey::parse(&encoded.replace(SLASH_STAND_IN, "/")) else {
                continue;
            };
            if key.as_str().starts_with(prefix.as_str()) {
                found.push(PendingUpload {
                    key,
                    upload_id: name,
                });
            }
        }
        found.sort_by(|a, b| a.upload_id.cmp(&b.upload_id));
        Ok(found)
    }

    async fn abort_upload(&self, upload: &PendingUpload) -> Result<(), StoreError> {
        // The id is a file name we listed; refuse anything that could point elsewhere.
        if upload.upload_id.contains('/') || upload.upload_id.starts_with('.') {
            return Err(StoreError::InvalidKey(super::KeyError::BadSegment(
                upload.upload_id.clone(),
            )));
        }
        let path = self.uploads_dir().join(&upload.upload_id);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(io_err("abort", &path, source)),
        }
    }
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}
