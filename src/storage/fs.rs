//! The local directory store (embedded mode).
//!
//! A put streams into `<root>/.uploads/<id>~<key>` and renames the file into place once it is
//! complete and synced, so readers never see a partial object. Upload files that outlive their
//! writer (a crash) are what [`ObjectStore::pending_uploads`] reports.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use std::future::Future;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

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

/// Largest single read of an object body.
const MAX_READ: usize = 4 * 1024 * 1024;

/// An object's bytes, read with positional reads on the blocking pool, each into a buffer of
/// the size the caller asked for, dropped once copied out: a reader that stalls holds no
/// buffer (a `tokio::fs::File` keeps its largest read's buffer for its whole life).
struct FileBody {
    file: std::sync::Arc<std::fs::File>,
    offset: u64,
    remaining: u64,
    reading: Option<tokio::task::JoinHandle<std::io::Result<Vec<u8>>>>,
    ready: Vec<u8>,
    ready_at: usize,
}

impl AsyncRead for FileBody {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.ready_at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_at);
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    this.ready = Vec::new();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.remaining == 0 || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let reading = this.reading.get_or_insert_with(|| {
                let want = usize::try_from(this.remaining)
                    .unwrap_or(MAX_READ)
                    .min(buf.remaining())
                    .min(MAX_READ);
                let (file, offset) = (this.file.clone(), this.offset);
                tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut data = vec![0u8; want];
                    let n = file.read_at(&mut data, offset)?;
                    data.truncate(n);
                    Ok(data)
                })
            });
            let done = match std::pin::Pin::new(reading).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(done) => done,
            };
            this.reading = None;
            let data = done.map_err(std::io::Error::other)??;
            if data.is_empty() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the object is shorter than its size",
                )));
            }
            this.offset += data.len() as u64;
            this.remaining -= data.len() as u64;
            this.ready = data;
        }
    }
}

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
        let opened = tokio::task::spawn_blocking({
            let path = path.clone();
            move || {
                let file = std::fs::File::open(&path)?;
                let size = file.metadata()?.len();
                Ok::<_, std::io::Error>((file, size))
            }
        })
        .await
        .map_err(|e| io_err("open", &path, std::io::Error::other(e)))?;
        let (file, size) = opened.map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(key.clone()),
            _ => io_err("open", &path, source),
        })?;
        let (offset, len) = match range {
            None => (0, size),
            Some(range) => range
                .resolve(size)
                .ok_or(StoreError::RangeNotSatisfiable { size })?,
        };
        Ok(GetObject {
            size,
            offset,
            len,
            body: Box::pin(FileBody {
                file: std::sync::Arc::new(file),
                offset,
                remaining: len,
                reading: None,
                ready: Vec::new(),
                ready_at: 0,
            }),
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
                // An entry deleted between the directory read and its stat (another process
                // deleting, say a second runner erasing the same release) is simply gone.
                let file_type = match entry.file_type().await {
                    Ok(file_type) => file_type,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => return Err(io_err("stat", &entry.path(), source)),
                };
                if file_type.is_dir() {
                    pending.push((entry.path(), key));
                } else if file_type.is_file() && key.starts_with(prefix.as_str()) {
                    // Files that are not valid keys were not written by this store; skip them.
                    if let Ok(key) = ObjectKey::parse(&key) {
                        let size = match entry.metadata().await {
                            Ok(meta) => meta.len(),
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(source) => return Err(io_err("stat", &entry.path(), source)),
                        };
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
