//! The backup archive: one tenant's keys at one revision, encrypted, in frames small enough that
//! writing and reading it keep memory flat however many objects the tenant holds.
//!
//! Layout: a magic line, a plaintext header (what the backup is, and its data key sealed with
//! the KEK), then frames `u32 length ‖ AES-256-GCM(ciphertext)`. Frame 0 holds the tenant's
//! encryption-at-rest keys, the frames after it pages of `(key, value)`, the last one a trailer
//! counting them. Each frame's nonce and associated data carry its index and whether it is the
//! last, so frames cannot be reordered, dropped or the archive cut short without the reader
//! noticing; a flipped byte fails the frame's authentication.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;

use crate::kek::Kek;
use crate::pki::EncryptionKey;

const MAGIC: &[u8] = b"KAMAJI-BACKUP/1\n";
/// Largest frame accepted: a page of the largest values etcd holds, with room.
const MAX_FRAME: usize = 512 * 1024 * 1024;

/// What an archive says of itself, readable without the key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub id: String,
    pub tenant: String,
    /// The tenant's id: its key prefix `/<tenant_id>/` when the backup was taken.
    pub tenant_id: String,
    /// The datastore revision every key was read at.
    pub revision: i64,
    pub kubernetes_version: String,
    pub created_at: i64,
    /// The archive's data key, sealed with the KEK for this backup's id.
    pub sealed_key: String,
    /// Random per archive: the first four bytes of every frame's nonce.
    pub nonce_prefix: String,
}

/// The tenant secrets a restore needs besides its keys: without the keys its Secrets were
/// encrypted with, restored Secrets could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Secrets {
    pub encryption_keys: Vec<EncryptionKey>,
    pub encrypted_resources: Vec<String>,
    /// The backed-up cluster's PKI, for a restore into a new cluster that keeps its identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

/// A cluster's PKI as JSON (its CA and service-account keys among it). Debug never shows it.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Identity(pub String);

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity(..)")
    }
}

/// Counts written last: a reader that saw no trailer holds a cut archive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trailer {
    pub keys: i64,
    pub bytes: i64,
    /// Keys bound to a lease (Events, the apiservers' own leases): left out, since they would
    /// otherwise never expire once restored.
    pub leased_skipped: i64,
}

/// One key under the tenant's prefix: `key` is relative to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// What a reader yields, in archive order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Header(Header),
    Secrets(Secrets),
    Entries(Vec<Entry>),
    Trailer(Trailer),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a kamaji backup archive (its first bytes are not the format's mark)")]
    NotAnArchive,
    #[error("the archive's header does not decode: {0}")]
    Header(String),
    #[error("the archive's data key does not open with kamajid's key-encryption keys (the backup was taken by a kamajid with other keys, or the header was altered)")]
    Key,
    #[error("the archive is corrupt: frame {0} fails its authentication (a byte was changed, or frames were reordered)")]
    Frame(u64),
    #[error("the archive is corrupt: frame {frame} does not decode: {detail}")]
    Content { frame: u64, detail: String },
    #[error("the archive is cut short: it ends before its trailer")]
    Truncated,
    #[error("the archive has bytes after its trailer")]
    Trailing,
}

/// The associated data that binds the data key to its backup.
pub fn key_aad(id: &str) -> String {
    format!("kamaji-backup/{id}")
}

fn nonce(prefix: &[u8; 4], index: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(prefix);
    n[4..].copy_from_slice(&index.to_be_bytes());
    n
}

fn frame_aad(id: &str, index: u64, last: bool) -> Vec<u8> {
    format!("{id}/{index}/{}", u8::from(last)).into_bytes()
}

/// Writes an archive, frame by frame: the caller sends each chunk on as it is made.
pub struct Writer {
    id: String,
    cipher: Aes256Gcm,
    prefix: [u8; 4],
    index: u64,
    trailer: Trailer,
    page: Vec<u8>,
}

/// A page is sealed once its plaintext reaches this size (or the caller flushes).
pub const PAGE_BYTES: usize = 1024 * 1024;

impl Writer {
    /// A writer for backup `header` (its `sealed_key` and `nonce_prefix` are filled in here),
    /// and the archive's first bytes: the mark, the header and the secrets frame.
    pub fn start(
        kek: &Kek,
        mut header: Header,
        secrets: &Secrets,
    ) -> Result<(Self, Vec<u8>), ArchiveError> {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        let mut prefix = [0u8; 4];
        rand::thread_rng().fill_bytes(&mut prefix);
        header.sealed_key = kek.seal(&key_aad(&header.id), &B64.encode(key));
        header.nonce_prefix = hex::encode(prefix);
        let head = serde_json::to_vec(&header).map_err(|e| ArchiveError::Header(e.to_string()))?;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(head.len() as u32).to_be_bytes());
        out.extend_from_slice(&head);
        let mut w = Self {
            id: header.id,
            cipher: Aes256Gcm::new((&key).into()),
            prefix,
            index: 0,
            trailer: Trailer::default(),
            page: Vec::new(),
        };
        let plain = serde_json::to_vec(secrets).map_err(|e| ArchiveError::Header(e.to_string()))?;
        out.extend(w.seal(&plain, false));
        Ok((w, out))
    }

    fn seal(&mut self, plain: &[u8], last: bool) -> Vec<u8> {
        let aad = frame_aad(&self.id, self.index, last);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce(&self.prefix, self.index)),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .unwrap_or_default(); // AES-GCM cannot fail for a frame under 64 GiB.
        self.index += 1;
        let mut out = (ct.len() as u32).to_be_bytes().to_vec();
        out.extend(ct);
        out
    }

    /// Adds a key (relative to the tenant's prefix); a sealed frame once the page is full.
    pub fn entry(&mut self, key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
        for part in [key, value] {
            self.page
                .extend_from_slice(&(part.len() as u32).to_be_bytes());
            self.page.extend_from_slice(part);
        }
        self.trailer.keys += 1;
        self.trailer.bytes += (key.len() + value.len()) as i64;
        (self.page.len() >= PAGE_BYTES)
            .then(|| self.flush())
            .flatten()
    }

    /// Counts a key left out because it is bound to a lease.
    pub fn skip_leased(&mut self) {
        self.trailer.leased_skipped += 1;
    }

    /// The page so far as a sealed frame, if it holds anything.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        if self.page.is_empty() {
            return None;
        }
        let page = std::mem::take(&mut self.page);
        Some(self.seal(&page, false))
    }

    /// The last bytes of the archive (the rest of the page and the trailer), and its counts.
    pub fn finish(mut self) -> (Vec<u8>, Trailer) {
        let mut out = self.flush().unwrap_or_default();
        let trailer = self.trailer;
        let plain = serde_json::to_vec(&trailer).unwrap_or_default();
        out.extend(self.seal(&plain, true));
        (out, trailer)
    }
}

/// Reads an archive fed in chunks of any size, as they arrive.
pub struct Reader {
    kek: Kek,
    buf: Vec<u8>,
    state: State,
}

enum State {
    Mark,
    Header,
    Frames {
        id: String,
        cipher: Box<Aes256Gcm>,
        prefix: [u8; 4],
        index: u64,
    },
    Done,
}

impl Reader {
    pub fn new(kek: &Kek) -> Self {
        Self {
            kek: kek.clone(),
            buf: Vec::new(),
            state: State::Mark,
        }
    }

    /// Feeds the next bytes; every part they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Part>, ArchiveError> {
        self.buf.extend_from_slice(chunk);
        let mut parts = Vec::new();
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            match &mut self.state {
                State::Mark => {
                    let n = rest.len().min(MAGIC.len());
                    if rest[..n] != MAGIC[..n] {
                        return Err(ArchiveError::NotAnArchive);
                    }
                    if n < MAGIC.len() {
                        break;
                    }
                    at += n;
                    self.state = State::Header;
                }
                State::Header => {
                    let Some(body) = framed(rest, 64 * 1024)
                        .map_err(|_| ArchiveError::Header("it is too large".into()))?
                    else {
                        break;
                    };
                    let h: Header = serde_json::from_slice(body)
                        .map_err(|e| ArchiveError::Header(e.to_string()))?;
                    at += 4 + body.len();
                    let key = self
                        .kek
                        .open(&key_aad(&h.id), &h.sealed_key)
                        .ok()
                        .and_then(|k| B64.decode(k).ok())
                        .and_then(|k| <[u8; 32]>::try_from(k).ok())
                        .ok_or(ArchiveError::Key)?;
                    let prefix = hex::decode(&h.nonce_prefix)
                        .ok()
                        .and_then(|p| <[u8; 4]>::try_from(p).ok())
                        .ok_or_else(|| ArchiveError::Header("nonce_prefix".into()))?;
                    self.state = State::Frames {
                        id: h.id.clone(),
                        cipher: Box::new(Aes256Gcm::new((&key).into())),
                        prefix,
                        index: 0,
                    };
                    parts.push(Part::Header(h));
                }
                State::Frames {
                    id,
                    cipher,
                    prefix,
                    index,
                } => {
                    let i = *index;
                    let Some(body) = framed(rest, MAX_FRAME).map_err(|_| ArchiveError::Frame(i))?
                    else {
                        break;
                    };
                    let n = Nonce::from_slice(&nonce(prefix, i)).to_owned();
                    let open = |last| {
                        cipher
                            .decrypt(
                                &n,
                                Payload {
                                    msg: body,
                                    aad: &frame_aad(id, i, last),
                                },
                            )
                            .ok()
                    };
                    let (plain, last) = match open(false) {
                        Some(p) => (p, false),
                        None => (open(true).ok_or(ArchiveError::Frame(i))?, true),
                    };
                    at += 4 + body.len();
                    *index += 1;
                    let content = |detail: String| ArchiveError::Content { frame: i, detail };
                    parts.push(if last {
                        Part::Trailer(
                            serde_json::from_slice(&plain).map_err(|e| content(e.to_string()))?,
                        )
                    } else if i == 0 {
                        Part::Secrets(
                            serde_json::from_slice(&plain).map_err(|e| content(e.to_string()))?,
                        )
                    } else {
                        Part::Entries(entries(&plain).map_err(content)?)
                    });
                    if last {
                        self.state = State::Done;
                    }
                }
                State::Done => {
                    if !rest.is_empty() {
                        return Err(ArchiveError::Trailing);
                    }
                    break;
                }
            }
        }
        self.buf.drain(..at);
        Ok(parts)
    }

    /// Says whether the archive ended where it should: after its trailer.
    pub fn end(&self) -> Result<(), ArchiveError> {
        match self.state {
            State::Done => Ok(()),
            _ => Err(ArchiveError::Truncated),
        }
    }
}

/// The body of a `u32 length ‖ body` record at the start of `buf`, once all of it is there.
fn framed(buf: &[u8], max: usize) -> Result<Option<&[u8]>, ()> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > max {
        return Err(());
    }
    Ok(buf.get(4..4 + len))
}

fn entries(mut page: &[u8]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    let take = |page: &mut &[u8]| -> Result<Vec<u8>, String> {
        let body = framed(page, MAX_FRAME)
            .ok()
            .flatten()
            .ok_or("an entry runs past its page")?;
        let v = body.to_vec();
        *page = &page[4 + v.len()..];
        Ok(v)
    };
    while !page.is_empty() {
        let key = take(&mut page)?;
        let value = take(&mut page)?;
        out.push(Entry { key, value });
    }
    Ok(out)
}
