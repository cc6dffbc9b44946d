//! Chroma upsampling as libjpeg does it: "fancy" triangular filters for
//! 2:1 ratios (`jdsample.c`), replication otherwise.

use super::frame::{Component, Frame};

/// libjpeg's upsampled row `y` of a component. Writes at least the
/// image width (more for padded 2:1 rows); callers crop.
pub(super) fn upsample_row(frame: &Frame, component: &Component, y: usize, out: &mut [u8]) {
    let stride = component.blocks_w * 8;
    let row = |i: usize| &component.samples[i * stride..i * stride + component.width];
    let h_ratio = frame.h_max / component.h;
    let v_ratio = frame.v_max / component.v;
    // The row that is nearer for this output row's other half, clamped to
    // the image as libjpeg's context rows are.
    let further_row = || {
        if y.is_multiple_of(2) {
            (y / 2).saturating_sub(1)
        } else {
            (y / 2 + 1).min(component.height - 1)
        }
    };
    let fancy_width = component.width > 2;
    match (h_ratio, v_ratio) {
        (1, 1) => out[..component.width].copy_from_slice(row(y)),
        (2, 1) if fancy_width => fancy_h2(row(y), out),
        (1, 2) => {
            // h1v2_fancy_upsample: 3/4 nearer row + 1/4 further row,
            // biased 1 above and 2 below.
            let bias = if y.is_multiple_of(2) { 1 } else { 2 };
            for ((o, &near), &far) in out.iter_mut().zip(row(y / 2)).zip(row(further_row())) {
                *o = ((u32::from(near) * 3 + u32::from(far) + bias) >> 2) as u8;
            }
        }
        (2, 2) if fancy_width => fancy_h2v2(row(y / 2), row(further_row()), out),
        (h, v) => {
            // int_upsample, h2v1_upsample, h2v2_upsample: replication.
            for (chunk, &sample) in out.chunks_mut(h).zip(row(y / v)) {
                chunk.fill(sample);
            }
        }
    }
}

/// `h2v1_fancy_upsample`: 3/4 nearer + 1/4 further sample, biased 1
/// then 2. Replicating the edge samples reproduces its special first and
/// last columns.
fn fancy_h2(input: &[u8], out: &mut [u8]) {
    let at = |i: usize| u32::from(input[i]);
    let last = input.len() - 1;
    for (c, pair) in out.chunks_exact_mut(2).take(input.len()).enumerate() {
        let this = at(c) * 3;
        pair[0] = ((this + at(c.saturating_sub(1)) + 1) >> 2) as u8;
        pair[1] = ((this + at((c + 1).min(last)) + 2) >> 2) as u8;
    }
}

/// `h2v2_fancy_upsample` for one output row: vertical 3:1 column sums,
/// then horizontal 3:1 with biases 8 and 7 over 16. Replicating the edge
/// sums reproduces its special first and last columns. Column sums are
/// taken a chunk at a time into a buffer with one neighbour on each side,
/// so that both steps are straight loops the compiler vectorises.
fn fancy_h2v2(near: &[u8], far: &[u8], out: &mut [u8]) {
    const CHUNK: usize = 128;
    let width = near.len().min(far.len()).min(out.len() / 2);
    if width == 0 {
        return;
    }
    let column = |near: u8, far: u8| u16::from(near) * 3 + u16::from(far);
    let sum = |i: usize| column(near[i], far[i]);
    let mut sums = [0u16; CHUNK + 2];
    for first in (0..width).step_by(CHUNK) {
        let n = CHUNK.min(width - first);
        sums[0] = sum(first.saturating_sub(1));
        for ((s, &a), &b) in sums[1..=n]
            .iter_mut()
            .zip(&near[first..first + n])
            .zip(&far[first..first + n])
        {
            *s = column(a, b);
        }
        sums[n + 1] = sum((first + n).min(width - 1));
        let pairs = out[2 * first..2 * (first + n)].chunks_exact_mut(2);
        for (pair, s) in pairs.zip(sums[..n + 2].windows(3)) {
            let this = s[1] * 3;
            pair[0] = ((this + s[0] + 8) >> 4) as u8;
            pair[1] = ((this + s[2] + 7) >> 4) as u8;
        }
    }
}
