//! Files as the sandbox data centres hold them, on disk so that memory stays flat whatever
//! the size: the parts of an upload under way (`upload.saveFilePart`/`saveBigFilePart`), then
//! the finished file, read back in chunks by `upload.getFile`
//! (core.telegram.org/api/files: parts of one size, divisible by 1 KiB, dividing 512 KiB,
//! except the last; at most 4000 parts; `getFile` offsets and limits by its rules).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context;
use sha2::{Digest, Sha256};

/// Telegram's largest upload part, and the most parts a file may have.
const MAX_PART: usize = 512 * 1024;
const MAX_PARTS: i32 = 4000;
/// `upload.getFile` never answers more than 1 MiB.
const MAX_CHUNK: i32 = 1024 * 1024;
/// Enough of a file's start to tell its format.
const HEAD_BYTES: usize = 64;

/// A finished file: its id, size, hash and format.
#[derive(Clone, Debug)]
pub struct StoredFile {
    pub id: i64,
    pub size: u64,
    pub sha256: String,
    pub format: &'static str,
}

#[derive(Default)]
struct Upload {
    /// Part number → its size.
    parts: BTreeMap<i32, usize>,
    /// What `saveBigFilePart` announced as `file_total_parts`.
    total: Option<i32>,
}

pub struct Files {
    dir: PathBuf,
    uploads: Mutex<HashMap<(i64, i64), Upload>>,
}

/// An RPC error name (code 400) for a file call that Telegram refuses.
pub type Refused = &'static str;

impl Files {
    pub fn open(dir: &std::path::Path) -> anyhow::Result<Self> {
        let uploads = dir.join("uploads");
        // Unfinished uploads do not outlive the process (Telegram's expire too).
        let _ = fs::remove_dir_all(&uploads);
        for sub in [&uploads, &dir.join("files")] {
            fs::create_dir_all(sub).with_context(|| format!("creating {}", sub.display()))?;
        }
        Ok(Self { dir: dir.to_owned(), uploads: Mutex::default() })
    }

    fn upload_dir(&self, key_id: i64, file_id: i64) -> PathBuf {
        self.dir.join("uploads").join(format!("{key_id:x}-{file_id:x}"))
    }

    fn file_dir(&self, id: i64) -> PathBuf {
        self.dir.join("files").join(format!("{id:x}"))
    }

    /// One part of an upload by `key_id`; `total` for `saveBigFilePart`.
    pub fn save_part(&self, key_id: i64, file_id: i64, part: i32, bytes: &[u8], total: Option<i32>) -> Result<(), Refused> {
        if !(0..MAX_PARTS).contains(&part) || total.is_some_and(|t| part >= t) {
            return Err("FILE_PART_INVALID");
        }
        if bytes.is_empty() {
            return Err("FILE_PART_EMPTY");
        }
        if bytes.len() > MAX_PART {
            return Err("FILE_PART_TOO_BIG");
        }
        if total.is_some_and(|t| !(1..=MAX_PARTS).contains(&t)) {
            return Err("FILE_PARTS_INVALID");
        }
        let dir = self.upload_dir(key_id, file_id);
        fs::create_dir_all(&dir).map_err(|_| "FILE_WRITE_FAILED")?;
        fs::write(dir.join(part.to_string()), bytes).map_err(|_| "FILE_WRITE_FAILED")?;
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let upload = uploads.entry((key_id, file_id)).or_default();
        if total.is_some() && upload.total.is_some_and(|t| Some(t) != total) {
            return Err("FILE_PARTS_INVALID");
        }
        upload.total = total.or(upload.total);
        upload.parts.insert(part, bytes.len());
        Ok(())
    }

    /// The upload `file_id` of `key_id`, in `parts` parts, becomes a file: every part there,
    /// of one size but the last, matching the MD5 when one is given (small files only).
    pub fn finish(&self, key_id: i64, file_id: i64, parts: i32, md5: Option<&str>, big: bool) -> Result<StoredFile, Refused> {
        let upload = self.uploads.lock().unwrap_or_else(|p| p.into_inner()).remove(&(key_id, file_id));
        let upload = upload.ok_or("FILE_PARTS_INVALID")?;
        let numbers: Vec<i32> = upload.parts.keys().copied().collect();
        if parts < 1 || numbers != (0..parts).collect::<Vec<_>>() || (big && upload.total != Some(parts)) || (!big && upload.total.is_some()) {
            return Err("FILE_PARTS_INVALID");
        }
        let sizes: Vec<usize> = upload.parts.values().copied().collect();
        let part_size = sizes[0];
        let (whole, last) = sizes.split_at(sizes.len() - 1);
        let regular = |s: usize| s.is_multiple_of(1024) && MAX_PART.is_multiple_of(s);
        if whole.iter().any(|s| *s != part_size || !regular(*s)) || (sizes.len() > 1 && last[0] > part_size) {
            return Err("FILE_PARTS_INVALID");
        }
        let id = super::random_i64() & i64::MAX;
        fs::rename(self.upload_dir(key_id, file_id), self.file_dir(id)).map_err(|_| "FILE_WRITE_FAILED")?;
        let stored = self.describe(id).map_err(|_| "FILE_WRITE_FAILED")?;
        if let Some(expected) = md5.filter(|m| !m.is_empty())
            && self.md5(id).map_err(|_| "FILE_WRITE_FAILED")? != expected.to_ascii_lowercase()
        {
            return Err("MD5_CHECKSUM_INVALID");
        }
        Ok(stored)
    }

    /// A file that arrives whole (a sandbox client's).
    pub fn store_bytes(&self, bytes: &[u8]) -> anyhow::Result<StoredFile> {
        let id = super::random_i64() & i64::MAX;
        let dir = self.file_dir(id);
        fs::create_dir_all(&dir)?;
        for (n, part) in bytes.chunks(MAX_PART).enumerate() {
            fs::write(dir.join(n.to_string()), part)?;
        }
        self.describe(id)
    }

    fn parts(&self, id: i64) -> std::io::Result<Vec<PathBuf>> {
        let dir = self.file_dir(id);
        let mut numbered: Vec<(u32, PathBuf)> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
            .collect();
        numbered.sort();
        Ok(numbered.into_iter().map(|(_, p)| p).collect())
    }

    /// Streams the file's parts through `each`, in order.
    fn each_chunk(&self, id: i64, mut each: impl FnMut(&[u8])) -> std::io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        for path in self.parts(id)? {
            let mut part = fs::File::open(path)?;
            loop {
                let n = part.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                each(&buf[..n]);
            }
        }
        Ok(())
    }

    fn describe(&self, id: i64) -> anyhow::Result<StoredFile> {
        let (mut hasher, mut head, mut size) = (Sha256::new(), Vec::with_capacity(HEAD_BYTES), 0u64);
        self.each_chunk(id, |chunk| {
            hasher.update(chunk);
            let wanted = HEAD_BYTES.saturating_sub(head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..wanted]);
            size += chunk.len() as u64;
        })?;
        Ok(StoredFile { id, size, sha256: super::hex(&hasher.finalize()), format: file_format(&head) })
    }

    fn md5(&self, id: i64) -> std::io::Result<String> {
        let mut context = md5::Context::new();
        self.each_chunk(id, |chunk| context.consume(chunk))?;
        Ok(format!("{:x}", context.finalize()))
    }

    /// `upload.getFile` of file `id`: `limit` bytes from `offset` (fewer only at the end).
    pub fn read(&self, id: i64, offset: i64, limit: i32, precise: bool) -> Result<Vec<u8>, Refused> {
        let align = if precise { 1024 } else { 4096 };
        if limit <= 0 || limit > MAX_CHUNK || limit % 1024 != 0 || (!precise && MAX_CHUNK % limit != 0) {
            return Err("LIMIT_INVALID");
        }
        let one_megabyte = i64::from(MAX_CHUNK);
        if offset < 0 || offset % align != 0 || (!precise && offset / one_megabyte != (offset + i64::from(limit) - 1) / one_megabyte) {
            return Err("OFFSET_INVALID");
        }
        let parts = self.parts(id).map_err(|_| "FILE_ID_INVALID")?;
        let part_size = parts.first().and_then(|p| fs::metadata(p).ok()).map_or(0, |m| m.len());
        let mut out = Vec::with_capacity(limit as usize);
        let mut at = offset as u64;
        while out.len() < limit as usize && part_size > 0 {
            let Some(path) = parts.get((at / part_size) as usize) else { break };
            let mut part = fs::File::open(path).map_err(|_| "FILE_ID_INVALID")?;
            part.seek(SeekFrom::Start(at % part_size)).map_err(|_| "FILE_ID_INVALID")?;
            let before = out.len();
            (&mut part).take((limit as usize - out.len()) as u64).read_to_end(&mut out).map_err(|_| "FILE_ID_INVALID")?;
            if out.len() == before {
                break;
            }
            at += (out.len() - before) as u64;
        }
        Ok(out)
    }
}

fn file_format(head: &[u8]) -> &'static str {
    // An OGG stream's first page holds the codec's header packet right after its 27+1 byte header.
    if head.starts_with(b"OggS") {
        return if head.get(28..36) == Some(b"OpusHead") { "ogg_opus" } else { "ogg" };
    }
    match head {
        [0x1A, 0x45, 0xDF, 0xA3, ..] => "webm",
        [0xFF, 0xD8, 0xFF, ..] => "jpeg",
        [0x89, b'P', b'N', b'G', ..] => "png",
        [b'%', b'P', b'D', b'F', ..] => "pdf",
        _ => "other",
    }
}
