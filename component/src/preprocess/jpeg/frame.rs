//! The frame being decoded: its components, their sample buffers and
//! coefficients, the current scan, and the zigzag order of a block.

/// Zigzag position -> natural position, with libjpeg's 16 spare entries
/// so that corrupt run lengths land on coefficient 63 rather than out of bounds.
pub(super) const NATURAL_ORDER: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63,
];

pub(super) struct Component {
    pub(super) id: u8,
    pub(super) h: usize,
    pub(super) v: usize,
    pub(super) quant_index: usize,
    /// Copied when the component first appears in a scan, as libjpeg does.
    pub(super) quant: Option<[u16; 64]>,
    /// Sample dimensions before upsampling (`downsampled_width/height`).
    pub(super) width: usize,
    pub(super) height: usize,
    /// Block grid padded to whole MCUs.
    pub(super) blocks_w: usize,
    pub(super) blocks_h: usize,
    /// Progressive frames keep every coefficient until the last scan.
    pub(super) coefs: Vec<i16>,
    pub(super) samples: Vec<u8>,
    pub(super) dc_pred: i32,
    pub(super) dc_table: usize,
    pub(super) ac_table: usize,
}

pub(super) struct Frame {
    pub(super) width: usize,
    pub(super) height: usize,
    pub(super) progressive: bool,
    pub(super) h_max: usize,
    pub(super) v_max: usize,
    pub(super) mcus_x: usize,
    pub(super) mcus_y: usize,
    pub(super) components: Vec<Component>,
}

pub(super) struct Scan {
    pub(super) components: Vec<usize>,
    pub(super) ss: usize,
    pub(super) se: usize,
    pub(super) ah: u32,
    pub(super) al: u32,
}
