//! Single-threaded runs of one session, side by side: how the engine keeps
//! every core busy when inferences overlap.
//!
//! A run with two intra-op threads on two cores is fastest for one request
//! alone, but when requests overlap, runs of one thread each, one per core,
//! get more done (ViT-B/16 on 2 cores, by hand: 7.5 img/s against 6.3-6.9
//! for the two-thread session's runs in turn), as bare onnxruntime at one
//! thread with eight clients does. So the engine keeps a second,
//! single-threaded session of the same model and sends a run to it whenever
//! another run is under way; the first run of an idle engine takes the
//! multi-threaded one.
//!
//! onnxruntime lets any number of threads call `Run` on one session at once
//! (its C API's documented contract, relied on by every Python server that
//! shares an `InferenceSession`). `ort` nevertheless makes `Session::run`
//! take `&mut self`, because some execution providers' allocators are not
//! thread-safe; our sessions use only the CPU provider, whose arena is. One
//! session for all the lanes costs one more copy of the weights; a session
//! per lane would cost one per lane (measured: +335 MB each for ViT-B/16,
//! sharing onnxruntime's prepacked-weights container saved 25 MB), which
//! would take peak RSS past bare onnxruntime's on two cores.

use std::ffi::CString;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use anyhow::Context;
use ort::AsPointer;
use ort::session::Session;
use ort::value::{DynValue, Tensor};

/// A single-threaded session whose runs may overlap.
pub(super) struct Lanes {
    session: Session,
    input_name: CString,
    output_name: CString,
    /// Runs it has served, for `/vitrine/stats`.
    runs: AtomicU64,
}

impl Lanes {
    /// `session` must have been built with one intra-op thread and the CPU
    /// provider only; `output` is the index of its logits.
    pub(super) fn new(session: Session, output: usize) -> anyhow::Result<Lanes> {
        let name = |outlets: &[ort::value::Outlet], i: usize| {
            let outlet = outlets
                .get(i)
                .context("the model lacks an input or output")?;
            CString::new(outlet.name()).context("a tensor name holds a NUL byte")
        };
        Ok(Lanes {
            input_name: name(session.inputs(), 0)?,
            output_name: name(session.outputs(), output)?,
            session,
            runs: AtomicU64::new(0),
        })
    }

    /// Runs the model on `input` alongside any other run of this session,
    /// and returns its logits.
    pub(super) fn run(&self, input: &Tensor<f32>) -> anyhow::Result<DynValue> {
        let names_in = [self.input_name.as_ptr()];
        let inputs = [input.ptr()];
        let names_out = [self.output_name.as_ptr()];
        let mut output: *mut ort::sys::OrtValue = ptr::null_mut();
        // SAFETY: the session outlives the call (it is borrowed from
        // `self`), the name and value arrays hold one valid pointer each as
        // their lengths say, and `output` is written only by onnxruntime.
        // Concurrent calls on one CPU session are what onnxruntime's
        // `OrtApi::Run` contract permits (see the module comment).
        let status = unsafe {
            (ort::api().Run)(
                self.session.ptr().cast_mut(),
                ptr::null(),
                names_in.as_ptr(),
                inputs.as_ptr(),
                1,
                names_out.as_ptr(),
                1,
                &mut output,
            )
        };
        // SAFETY: `status` is what `Run` returned, read and released once.
        unsafe { ort::Error::result_from_status(status) }?;
        let output = NonNull::new(output).context("onnxruntime returned no logits")?;
        self.runs.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `Run` gave us ownership of a value allocated by the
        // session's allocator, which the returned value releases once.
        Ok(unsafe { DynValue::from_ptr(output, Some(self.session.allocator())) })
    }

    pub(super) fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}

/// How many runs are under way on one engine.
#[derive(Default)]
pub(super) struct InFlight(AtomicUsize);

impl InFlight {
    /// Counts a run in until the guard drops; the guard says how many
    /// others were already under way.
    pub(super) fn enter(&self) -> Flight<'_> {
        let others = self.0.fetch_add(1, Ordering::AcqRel);
        Flight {
            count: &self.0,
            others,
        }
    }
}

pub(super) struct Flight<'a> {
    count: &'a AtomicUsize,
    pub(super) others: usize,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flight_counts_the_runs_before_it_until_it_ends() {
        let in_flight = InFlight::default();
        let first = in_flight.enter();
        assert_eq!(first.others, 0);
        let second = in_flight.enter();
        assert_eq!(second.others, 1);
        drop(first);
        assert_eq!(in_flight.enter().others, 1, "the second is still under way");
        drop(second);
        assert_eq!(in_flight.enter().others, 0);
    }
}
