//! The SHA-256 of a component file, remembered by the file's identity.
//!
//! The compiled-component cache is keyed by the component's hash. Hashing a
//! pre-initialized component (350 MB for ViT-B/16) costs a read and a hash
//! of every byte, at every start, only to find the `.cwasm` that is already
//! there. So the hash is kept in the cache folder under the file's identity:
//! its canonical path, device, inode, length, and modification and change
//! times to the nanosecond. Any write to the file changes its ctime, which
//! no user call can set back (`cp -p`, `touch -d` and `rsync -a` set only
//! mtime), and a file replaced by a rename has a new inode; either way the
//! file is hashed again.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A component's SHA-256.
pub type Sha = [u8; 32];

pub fn of_bytes(wasm: &[u8]) -> Sha {
    Sha256::digest(wasm).into()
}

/// `path`'s SHA-256: remembered in `cache` if its identity is unchanged,
/// else computed and remembered. The bytes are returned when they were read.
pub fn of_file(path: &Path, cache: &Path) -> std::io::Result<(Sha, Option<Vec<u8>>)> {
    let before = identity(path)?;
    let memo = memo_path(&before, cache);
    if let Some(sha) = std::fs::read_to_string(&memo).ok().and_then(|s| parse(&s)) {
        return Ok((sha, None));
    }
    let wasm = std::fs::read(path)?;
    let sha = of_bytes(&wasm);
    // Remembered only if the file did not change while it was read; a memo
    // that cannot be written costs the next start a hash, nothing more.
    if identity(path)? == before {
        let _ = write_memo(&memo, &sha);
    }
    Ok((sha, Some(wasm)))
}

fn identity(path: &Path) -> std::io::Result<String> {
    let canonical = std::fs::canonicalize(path)?;
    let m = std::fs::metadata(&canonical)?;
    Ok(format!(
        "{}\0{}\0{}\0{}\0{}.{}\0{}.{}",
        canonical.display(),
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

/// Where the hash of the file with this [`identity`] is remembered.
fn memo_path(identity: &str, cache: &Path) -> PathBuf {
    let key = Sha256::digest(identity.as_bytes());
    cache.join("digests").join(hex(&key[..16]))
}

fn write_memo(memo: &Path, sha: &Sha) -> std::io::Result<()> {
    let dir = memo.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // Renamed into place: a reader never sees half a line.
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, format!("sha256 {}\n", hex(sha)))?;
    std::fs::rename(&tmp, memo)
}

fn parse(line: &str) -> Option<Sha> {
    let hex = line.strip_prefix("sha256 ")?.trim_end();
    let mut sha = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (byte, pair) in sha.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(sha)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_digest_is_used_until_the_file_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, cache) = (dir.path().join("c.wasm"), dir.path().join("cache"));
        std::fs::write(&file, b"first").expect("write");
        let (sha, bytes) = of_file(&file, &cache).expect("hash");
        assert_eq!(
            (sha, bytes.as_deref()),
            (of_bytes(b"first"), Some(&b"first"[..]))
        );
        // Remembered: not read again.
        assert_eq!(of_file(&file, &cache).expect("memo"), (sha, None));

        // Same length, mtime set back as `cp -p` would: the ctime differs.
        let mtime = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .expect("mtime");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, b"other").expect("rewrite");
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(mtime))
            .expect("set mtime");
        let (sha, bytes) = of_file(&file, &cache).expect("rehash");
        assert_eq!((sha, bytes.is_some()), (of_bytes(b"other"), true));
    }

    #[test]
    fn a_damaged_memo_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, cache) = (dir.path().join("c.wasm"), dir.path().join("cache"));
        std::fs::write(&file, b"bytes").expect("write");
        let memo = memo_path(&identity(&file).expect("identity"), &cache);
        std::fs::create_dir_all(memo.parent().expect("parent")).expect("mkdir");
        std::fs::write(&memo, "sha256 12ab").expect("write memo");
        assert_eq!(of_file(&file, &cache).expect("hash").0, of_bytes(b"bytes"));
    }
}
