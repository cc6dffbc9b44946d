//! Pre-initialization: the model loaded at build time instead of per instance.
//!
//! Spin and `wasmtime serve` create an instance for every request, so a plain
//! build loads and optimises the model on every request. `vitrine preinit`
//! (wasmtime-wizer) instead calls [`wizer-initialize`](Preinit) once, with the
//! model folder preopened, and snapshots the instance's memory into a new
//! component. Every instance of that component starts with the optimised
//! model in memory and never opens a file. The model has also run once, on
//! a synthetic image, so the snapshot is proven to serve.
//!
//! Two things keep the snapshot usable and small:
//! - The files are read through `wasi:filesystem` directly and every handle
//!   is dropped before returning. wasi-libc would cache its preopen handles in
//!   memory, and those handles do not exist in a later instance.
//! - While loading, freed memory is zeroed (`crate::heap`): the snapshot
//!   skips zero pages, so the ONNX bytes and tract's intermediate graphs,
//!   freed once the plan is optimised, do not end up in the component.

use std::io::Read;
use std::sync::Mutex;

use anyhow::{Context, bail};
use wasi::filesystem::preopens;
use wasi::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};

use crate::inference::OnnxFile;
use crate::service::{LoadedModel, ServiceConfig};

wit_bindgen::generate!({
    path: "../wit",
    world: "vitrine:component/preinit",
});

/// A model loaded by `wizer-initialize`, with the name and version it was
/// loaded as: the snapshot is of that one version.
pub struct Preloaded {
    pub model_name: String,
    pub version: u64,
    pub model: LoadedModel,
}

static PRELOADED: Mutex<Option<Preloaded>> = Mutex::new(None);

/// The pre-initialized model, once: the service takes it on its first request.
pub fn take() -> Option<Preloaded> {
    PRELOADED.lock().ok().and_then(|mut p| p.take())
}

struct Preinit;

impl Guest for Preinit {
    fn wizer_initialize() {
        crate::heap::zero_freed(true);
        let result = preload();
        crate::heap::zero_freed(false);
        // What the snapshot will hold: the heap still in use, not its peak.
        let (live, peak) = crate::heap::in_use();
        crate::warn!(
            "vitrine: model loaded: {} MB in use on the heap (peak {} MB while loading)",
            live >> 20,
            peak >> 20
        );
        let image = memory_image();
        crate::warn!(
            "vitrine: the snapshot's memory: {} MB of pages with data over a span of {} MB ({}%; wasmtime maps it copy-on-write by default from 50%); data per 64 MB: {:?}",
            (image.data_pages * PAGE) >> 20,
            (image.span_pages * PAGE) >> 20,
            image.data_pages * 100 / image.span_pages.max(1),
            image.per_band_mb
        );
        match result {
            Ok(p) => {
                if let Ok(mut slot) = PRELOADED.lock() {
                    *slot = Some(p);
                }
            }
            // Traps, and wizer reports the message: there is nothing to snapshot.
            Err(e) => panic!("vitrine: cannot pre-initialize the model: {e:#}"),
        }
    }
}

export!(Preinit);

/// wasmtime's memory-image granularity: its data segments are cut per page.
const PAGE: usize = 64 << 10;

/// Where the snapshot's non-zero bytes lie in linear memory.
struct MemoryImage {
    /// Pages holding a non-zero byte.
    data_pages: usize,
    /// Pages up to the last one holding a non-zero byte: what the image spans.
    span_pages: usize,
    /// MB of data pages in each 64 MB band, from address 0.
    per_band_mb: Vec<usize>,
}

/// Scans linear memory page by page, as wizer does when it writes the
/// snapshot: wasmtime's density check weighs the data pages against the span.
fn memory_image() -> MemoryImage {
    const BAND: usize = 64 << 20;
    let pages = core::arch::wasm32::memory_size(0);
    let mut image = MemoryImage {
        data_pages: 0,
        span_pages: 0,
        per_band_mb: vec![0; (pages * PAGE).div_ceil(BAND)],
    };
    for page in 0..pages {
        let start = page * PAGE;
        // Address 0 is valid memory in wasm, but not a valid Rust pointer:
        // the first page is counted as data without reading it.
        let has_data = page == 0 || {
            // SAFETY: every address below memory_size is mapped linear memory;
            // the bytes are only read, as plain integers.
            let bytes = unsafe { core::slice::from_raw_parts(start as *const u64, PAGE / 8) };
            bytes.iter().any(|&w| w != 0)
        };
        if has_data {
            image.data_pages += 1;
            image.span_pages = page + 1;
            image.per_band_mb[start / BAND] += PAGE;
        }
    }
    for band in &mut image.per_band_mb {
        *band >>= 20;
    }
    image
        .per_band_mb
        .truncate((image.span_pages * PAGE).div_ceil(BAND));
    image
}

fn preload() -> anyhow::Result<Preloaded> {
    let config = ServiceConfig::from_env();
    let guest_dir = config.model_dir.to_string_lossy().into_owned();
    let dirs = preopens::get_directories();
    let Some((dir, _)) = dirs.iter().find(|(_, path)| *path == guest_dir) else {
        bail!("{guest_dir} is not preopened; preopen the model folder there (VITRINE_MODEL_DIR)");
    };
    let model = LoadedModel::from_files(
        &guest_dir,
        |name| read_file(dir, name),
        |name| Ok(Box::new(WasiFile::open(dir, name)?) as Box<dyn OnnxFile>),
    )?;
    // The warm-up's synthetic inference, run here once instead of at every
    // start of every server: a model that loads but cannot run fails the
    // build, and the instances of this snapshot skip it (see
    // `Service::warmup`). Its buffers are freed, so zeroed, before the
    // snapshot.
    model
        .infer_synthetic()
        .map_err(|e| anyhow::anyhow!("the model loads but does not run: {}", e.message))?;
    Ok(Preloaded {
        model_name: config.model_name,
        version: config.version,
        model,
    })
}

fn read_file(dir: &Descriptor, name: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    WasiFile::open(dir, name)?
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {name}"))?;
    Ok(bytes)
}

/// A file read through `wasi:filesystem` at offsets, as `std::io` reads one:
/// `onnx_file` seeks to each initializer in turn.
struct WasiFile {
    file: Descriptor,
    pos: u64,
    size: u64,
}

impl WasiFile {
    fn open(dir: &Descriptor, name: &str) -> anyhow::Result<WasiFile> {
        let file = dir
            .open_at(
                PathFlags::SYMLINK_FOLLOW,
                name,
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .with_context(|| format!("cannot open {name}"))?;
        let size = file
            .stat()
            .with_context(|| format!("cannot stat {name}"))?
            .size;
        Ok(WasiFile { file, pos: 0, size })
    }
}

impl std::io::Read for WasiFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One call reads at most 16 MB: wasi:filesystem returns a list.
        let want = buf.len().min(16 << 20) as u64;
        let (chunk, _eof) = self
            .file
            .read(want, self.pos)
            .map_err(|e| std::io::Error::other(format!("wasi:filesystem read: {e:?}")))?;
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for WasiFile {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::End(d) => self.size.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| std::io::Error::other("seek before the file's start"))?;
        Ok(self.pos)
    }
}
