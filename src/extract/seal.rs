//! Sealing: plaintext CSV chunks in, zstd-compressed age ciphertext out, with the ciphertext's
//! size and SHA-256. This is the only producer of bytes for the object store.

use std::io::Write;
use std::sync::mpsc::Receiver;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Sender;

use super::ExtractError;

/// zstd level whose tables the seal stage compresses with (see [`ZSTD_MIN_MATCH`]).
pub const ZSTD_LEVEL: i32 = 2;

/// The shortest match zstd looks for: 7 bytes, the longest its level-2 search allows, rather
/// than level 2's 6. In extract CSV a 5- or 6-byte match (a date's tail and a comma, a run of
/// empty fields) saves little beside what its sequence costs, and matches between random
/// 32-digit replacement ids are all that short. Measured with `examples/zstd_params.rs` on the
/// benchmark's Level I, II and III outputs, three other synthetic sources and the reference
/// pipeline's own input: smaller than `zstd -3` (the reference's level) on six of the seven, by
/// 0.2-3.6% (1.7% larger on the seventh), for 19-40% less CPU.
pub const ZSTD_MIN_MATCH: u32 = 7;

/// Ciphertext is handed to the uploader in pieces of about this size.
const CIPHER_CHUNK: usize = 1024 * 1024;

/// What the id stage sends (the transform's rows with their replacement ids written in): data,
/// then an explicit end. A channel that closes without `End` means the transform or the id
/// stage failed, and the output must not be completed.
#[derive(Debug, Clone)]
pub enum PlainChunk {
    /// Plaintext CSV bytes (shared, not copied, between the hash and seal stages).
    Data(Bytes),
    /// The transform finished successfully.
    End,
}

/// What the uploader receives: ciphertext, or an error that must abort the upload.
pub type CipherChunk = std::io::Result<Bytes>;

/// Size and SHA-256 of a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDigest {
    /// Number of bytes.
    pub bytes: u64,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
}

/// Sizes and SHA-256 of what was sealed: the plaintext in, the ciphertext out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealDigests {
    /// The plaintext CSV.
    pub plaintext: StreamDigest,
    /// The age ciphertext.
    pub ciphertext: StreamDigest,
}

impl SealDigests {
    /// Digests of a file stored as it is (the manifest): plaintext and stored bytes agree.
    pub fn of_plain(bytes: &[u8]) -> Self {
        let digest = StreamDigest {
            bytes: bytes.len() as u64,
            sha256: Sha256::digest(bytes).into(),
        };
        Self {
            plaintext: digest,
            ciphertext: digest,
        }
    }
}

/// The plaintext hash stage: size and SHA-256 of the chunks, in order, until the id stage's
/// `End`. It has a thread of its own so that whichever core has room does it; on the seal
/// thread it was a tenth of the pipeline's busiest stage.
pub fn digest(plaintext: Receiver<PlainChunk>) -> Result<StreamDigest, ExtractError> {
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    loop {
        match plaintext.recv() {
            Ok(PlainChunk::Data(data)) => {
                hasher.update(&data);
                bytes += data.len() as u64;
            }
            Ok(PlainChunk::End) => {
                return Ok(StreamDigest {
                    bytes,
                    sha256: hasher.finalize().into(),
                })
            }
            Err(_) => return Err(ExtractError::StageStopped("ids")),
        }
    }
}

/// Runs the seal stage on the current (blocking) thread until the id stage's `End`, and
/// returns the size and SHA-256 of the ciphertext. On failure an error item is sent to the
/// uploader so that it aborts instead of publishing a truncated object.
pub fn run(
    plaintext: Receiver<PlainChunk>,
    recipients: &[Box<dyn age::Recipient + Send>],
    ciphertext: Sender<CipherChunk>,
) -> Result<StreamDigest, ExtractError> {
    let abort = ciphertext.clone();
    let result = seal(plaintext, recipients, ciphertext);
    if let Err(error) = &result {
        // The uploader may already be gone (it failed first); then there is nobody to tell.
        let _ = abort.blocking_send(Err(std::io::Error::other(format!(
            "sealing failed: {error}"
        ))));
    }
    result
}

fn seal(
    plaintext: Receiver<PlainChunk>,
    recipients: &[Box<dyn age::Recipient + Send>],
    ciphertext: Sender<CipherChunk>,
) -> Result<StreamDigest, ExtractError> {
    if recipients.is_empty() {
        return Err(ExtractError::NoRecipients);
    }
    let encryptor = age::Encryptor::with_recipients(
        recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
    )
    .map_err(|e| ExtractError::Seal(std::io::Error::other(e.to_string())))?;
    let sink = ChannelWriter::new(ciphertext);
    let mut age_writer = encryptor.wrap_output(sink).map_err(ExtractError::Seal)?;
    let mut compressor = FrameCompressor::new()?;
    let mut frames = 0u64;
    loop {
        match plaintext.recv() {
            Ok(PlainChunk::Data(data)) => {
                let frame = compressor.compress(&data)?;
                age_writer.write_all(frame).map_err(output_error)?;
                frames += 1;
            }
            Ok(PlainChunk::End) => break,
            // The stages before stopped without finishing: their own error explains why.
            Err(_) => return Err(ExtractError::StageStopped("ids")),
        }
    }
    if frames == 0 {
        // A zstd stream holds at least one frame, even for no bytes at all.
        let frame = compressor.compress(&[])?;
        age_writer.write_all(frame).map_err(output_error)?;
    }
    age_writer.finish().map_err(output_error)?.finish()
}

/// An error writing ciphertext. [`ChannelWriter`] is the only source of `BrokenPipe` here: the
/// uploader is gone, and its own error is the one to report.
fn output_error(error: std::io::Error) -> ExtractError {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        ExtractError::StageStopped("upload")
    } else {
        ExtractError::Seal(error)
    }
}

/// Compresses each plaintext chunk as one independent zstd frame; the frames, concatenated,
/// are one zstd stream (`zstd -d` and every decoder read them as one).
///
/// Why frames rather than one streaming frame: zstd's streaming encoder copies input into a
/// ring buffer, and once the ring wraps every block is matched through its slower
/// external-dictionary path. Compressing a whole chunk from contiguous memory avoids that and,
/// with the chunk's size known up front, compresses as well or better: on the benchmark's
/// Level I file, 4 MiB frames took about a quarter less CPU and came out 0.7% smaller.
struct FrameCompressor {
    context: zstd::bulk::Compressor<'static>,
    frame: Vec<u8>,
}

impl FrameCompressor {
    fn new() -> Result<Self, ExtractError> {
        let mut context = zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(ExtractError::Seal)?;
        context
            .set_parameter(zstd::zstd_safe::CParameter::MinMatch(ZSTD_MIN_MATCH))
            .map_err(ExtractError::Seal)?;
        Ok(Self {
            context,
            frame: Vec::new(),
        })
    }

    /// The frame of `chunk`, valid until the next call.
    fn compress(&mut self, chunk: &[u8]) -> Result<&[u8], ExtractError> {
        self.frame.clear();
        self.frame
            .reserve(zstd::zstd_safe::compress_bound(chunk.len()));
        self.context
            .compress_to_buffer(chunk, &mut self.frame)
            .map_err(ExtractError::Seal)?;
        Ok(&self.frame)
    }
}

/// Encrypts a small file (the approval letter, the data dictionary) whole, in memory, to the
/// same recipients as the data files. Returns the ciphertext with both digests.
pub fn seal_small(
    plaintext: &[u8],
    recipients: &[Box<dyn age::Recipient + Send>],
) -> Result<(Vec<u8>, SealDigests), ExtractError> {
    if recipients.is_empty() {
        return Err(ExtractError::NoRecipients);
    }
    let encryptor = age::Encryptor::with_recipients(
        recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
    )
    .map_err(|e| ExtractError::Seal(std::io::Error::other(e.to_string())))?;
    let mut ciphertext = Vec::with_capacity(plaintext.len() + 1024);
    let mut writer = encryptor
        .wrap_output(&mut ciphertext)
        .map_err(ExtractError::Seal)?;
    writer.write_all(plaintext).map_err(ExtractError::Seal)?;
    writer.finish().map_err(ExtractError::Seal)?;
    let digest = |bytes: &[u8]| StreamDigest {
        bytes: bytes.len() as u64,
        sha256: Sha256::digest(bytes).into(),
    };
    let digests = SealDigests {
        plaintext: digest(plaintext),
        ciphertext: digest(&ciphertext),
    };
    Ok((ciphertext, digests))
}

/// Batches ciphertext into [`CIPHER_CHUNK`] pieces for the uploader, hashing on the way.
struct ChannelWriter {
    sender: Sender<CipherChunk>,
    buffer: Vec<u8>,
    hasher: Sha256,
    bytes: u64,
}

impl ChannelWriter {
    fn new(sender: Sender<CipherChunk>) -> Self {
        Self {
            sender,
            buffer: Vec::with_capacity(CIPHER_CHUNK),
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CIPHER_CHUNK));
        self.sender
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    fn finish(mut self) -> Result<StreamDigest, ExtractError> {
        self.send_buffer().map_err(output_error)?;
        Ok(StreamDigest {
            bytes: self.bytes,
            sha256: self.hasher.finalize().into(),
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CIPHER_CHUNK {
            self.send_buffer()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Batching is the point; the final piece goes out in `finish`.
        Ok(())
    }
}
