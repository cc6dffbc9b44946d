//! Warnings on stderr that keep no handle between messages.
//!
//! `eprintln!` writes through wasi-libc, which keeps the stderr stream it
//! opened first. `vitrine preinit` snapshots an instance's memory, and that
//! handle with it, but no resource survives into the instances started from
//! the snapshot: there their first warning trapped ("unknown handle") or
//! could have gone to another stream. So every message opens stderr, writes
//! and drops it, and the snapshot leaves wasi-libc's stderr untouched.

/// `eprintln!` for the component: see the module docs.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {
        $crate::log::line(&format!($($arg)*))
    };
}

#[doc(hidden)]
pub fn line(message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        let mut bytes = Vec::with_capacity(message.len() + 1);
        bytes.extend_from_slice(message.as_bytes());
        bytes.push(b'\n');
        let stream = wasi::cli::stderr::get_stderr();
        // One call writes at most 4096 bytes (wasi:io/streams). A warning
        // that cannot be written is dropped: it must not fail the request.
        for chunk in bytes.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{message}");
}
