//! The compiled-component cache's files, kept trustworthy.
//!
//! wasmtime runs a deserialized `.cwasm` as native code without checking
//! it, so a file damaged on disk (a flipped bit, a copy cut short, a crash
//! mid-write on a volume without atomic rename) could be executed. Every
//! `.cwasm` therefore has a checksum file beside it, `<name>.cwasm.crc32c`,
//! written after it; a `.cwasm` is used only when its bytes match. Both are
//! written to a temporary name and renamed into place, and a write that
//! fails (a full or read-only cache folder) leaves nothing behind.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// What the cache holds for one compiled component.
pub enum Cached {
    /// Nothing: compile.
    Missing,
    /// Present but not to be trusted: compile, and say why.
    Unusable(String),
    /// A file that matched its checksum when it was read.
    Verified,
}

fn checksum_path(cwasm: &Path) -> PathBuf {
    cwasm.with_extension("cwasm.crc32c")
}

fn checksum_line(crc: u32, len: u64) -> String {
    format!("crc32c {crc:08x} len {len}\n")
}

/// The CRC32C and length of a file, read in pieces: a `.cwasm` is tens of
/// MB, and wasmtime maps it from the page cache rather than from a copy.
fn checksum_of(path: &Path) -> std::io::Result<(u32, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut crc, mut len) = (0u32, 0u64);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((crc, len));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        len += n as u64;
    }
}

/// Checks the `.cwasm` at `path` against its checksum file. (A file changed
/// in place between this check and wasmtime mapping it would go unnoticed;
/// the cache's own writes never do that, they rename.)
pub fn read_verified(path: &Path) -> Cached {
    let (crc, len) = match checksum_of(path) {
        Ok(sum) => sum,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Cached::Missing,
        Err(e) => return Cached::Unusable(format!("it cannot be read ({e})")),
    };
    let Ok(expected) = std::fs::read_to_string(checksum_path(path)) else {
        return Cached::Unusable(format!(
            "it has no checksum ({} is missing)",
            checksum_path(path).display()
        ));
    };
    if expected != checksum_line(crc, len) {
        return Cached::Unusable(format!(
            "it does not match its checksum (damaged or cut short: {len} bytes, {:?} expected)",
            expected.trim()
        ));
    }
    Cached::Verified
}

/// Writes `bytes` to `path`, then its checksum, each atomically.
pub fn write_verified(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    remove_stale_temporaries(dir);
    write_atomically(path, bytes)?;
    let line = checksum_line(crc32c::crc32c(bytes), bytes.len() as u64);
    write_atomically(&checksum_path(path), line.as_bytes())
}

/// Runs of zeros are left as holes: a pre-initialized component's memory
/// image spans the heap's whole high-water mark, and most of it is the
/// zeroed blocks loading freed (about 700 of ViT-B/16's 1,100 MB).
const HOLE_CHUNK: usize = 64 << 10;

fn write_sparse(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::File::create(path)?;
    for chunk in bytes.chunks(HOLE_CHUNK) {
        if chunk.iter().all(|&b| b == 0) {
            file.seek(SeekFrom::Current(chunk.len() as i64))?;
        } else {
            file.write_all(chunk)?;
        }
    }
    // A trailing hole has no write to extend the file over it.
    file.set_len(bytes.len() as u64)
}

const TMP_PREFIX: &str = ".tmp-";

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    // Unique per write: two versions may compile their components at once.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
    let written = write_sparse(&tmp, bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot rename {} into place", tmp.display()))
        });
    if written.is_err() {
        // A full disk leaves a partial file: give the space back.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Removes temporaries left by a process that died mid-write (`kill -9`,
/// OOM). A temporary's name carries its writer's process id; one whose
/// writer still runs (another server sharing the cache) is left alone.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TMP_PREFIX))
            .and_then(|n| n.split('-').next())
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid).exists();
        if Path::new("/proc/self").exists() && !alive {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_or_unchecked_file_is_not_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("components/x.cwasm");
        assert!(matches!(read_verified(&path), Cached::Missing));
        write_verified(&path, b"compiled code").expect("write");
        assert!(matches!(read_verified(&path), Cached::Verified));
        std::fs::write(&path, b"compiled codf").expect("damage");
        assert!(matches!(read_verified(&path), Cached::Unusable(why) if why.contains("checksum")));
        std::fs::write(&path, b"compiled").expect("truncate");
        assert!(matches!(read_verified(&path), Cached::Unusable(_)));
        std::fs::remove_file(checksum_path(&path)).expect("remove");
        assert!(
            matches!(read_verified(&path), Cached::Unusable(why) if why.contains("no checksum"))
        );
        // A dead writer's temporary goes at the next write.
        let stale = path.with_file_name(".tmp-999999999-0");
        std::fs::write(&stale, b"half").expect("write");
        write_verified(&path, b"compiled code").expect("write");
        assert!(!stale.exists());
        assert!(matches!(read_verified(&path), Cached::Verified));
    }

    #[test]
    fn zero_runs_become_holes_and_read_back_as_zeros() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("components/sparse.cwasm");
        let mut bytes = vec![0u8; 4 << 20];
        bytes[..5].copy_from_slice(b"magic");
        bytes[(2 << 20) + 7] = 1;
        // Ends inside a zero run: the file must still be 4 MiB long.
        write_verified(&path, &bytes).expect("write");
        assert!(matches!(read_verified(&path), Cached::Verified));
        assert_eq!(std::fs::read(&path).expect("read"), bytes);
        use std::os::unix::fs::MetadataExt;
        let on_disk = std::fs::metadata(&path).expect("metadata").blocks() * 512;
        assert!(
            on_disk <= 4 * HOLE_CHUNK as u64,
            "{on_disk} bytes on disk for 2 data chunks: the zeros were written"
        );
    }
}
