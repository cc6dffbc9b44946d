//! Huffman tables (DHT segments, canonical decoding) and the bit reader
//! of entropy-coded data.

use super::error::{Failure, Result};

pub(super) struct Huffman {
    /// (code length, symbol) for every 10-bit prefix of a code of at most 10 bits.
    fast: Box<[(u8, u8); 1 << FAST_BITS]>,
    /// For AC tables: every 10-bit prefix that holds a whole code and its
    /// coefficient's magnitude bits, as [`FastAc::pack`]; 0 for the others.
    /// One lookup then decodes a coefficient (stb_image's `fast_ac`).
    fast_ac: Box<[i32; 1 << FAST_BITS]>,
    /// Canonical decoding tables indexed by code length (JPEG Annex F.2.2.3).
    max_code: [i32; 17],
    min_code: [i32; 17],
    first_index: [usize; 17],
    symbols: Vec<u8>,
}

const FAST_BITS: u32 = 10;

/// A coefficient decoded by one lookup: its zero run and value, and the
/// bits its code and magnitude took.
pub(super) struct FastAc {
    pub(super) run: usize,
    pub(super) value: i32,
    len: u32,
}

impl FastAc {
    /// value << 16 | run << 8 | len; never 0, since len > 0.
    fn pack(value: i32, run: u8, len: u32) -> i32 {
        (value << 16) | (i32::from(run) << 8) | len as i32
    }

    fn unpack(packed: i32) -> Self {
        Self {
            run: ((packed >> 8) & 15) as usize,
            value: packed >> 16,
            len: (packed & 255) as u32,
        }
    }
}

/// `HUFF_EXTEND`: the signed value of `size` magnitude bits `v`.
fn extend(v: i32, size: u32) -> i32 {
    if v < 1 << (size - 1) {
        v - (1 << size) + 1
    } else {
        v
    }
}

impl Huffman {
    pub(super) fn new(counts: &[u8; 16], symbols: &[u8]) -> Result<Self> {
        let mut fast = Box::new([(0u8, 0u8); 1 << FAST_BITS]);
        let mut max_code = [-1i32; 17];
        let mut min_code = [0i32; 17];
        let mut first_index = [0usize; 17];
        let mut code = 0u32;
        let mut index = 0usize;
        for len in 1..=16 {
            let count = usize::from(counts[len - 1]);
            first_index[len] = index;
            min_code[len] = code as i32;
            for _ in 0..count {
                if code >= 1 << len {
                    return Err(Failure::Corrupt("bad Huffman table"));
                }
                if len as u32 <= FAST_BITS {
                    let shift = FAST_BITS - len as u32;
                    let first = (code << shift) as usize;
                    for entry in &mut fast[first..first + (1 << shift)] {
                        *entry = (len as u8, symbols[index]);
                    }
                }
                code += 1;
                index += 1;
            }
            if count > 0 {
                max_code[len] = code as i32 - 1;
            }
            code <<= 1;
        }
        let fast_ac = Box::new(std::array::from_fn(|prefix| {
            let (len, rs) = fast[prefix];
            let (run, size) = (rs >> 4, u32::from(rs & 15));
            let total = u32::from(len) + size;
            if len == 0 || size == 0 || total > FAST_BITS {
                return 0;
            }
            let magnitude = (prefix as i32 >> (FAST_BITS - total)) & ((1 << size) - 1);
            FastAc::pack(extend(magnitude, size), run, total)
        }));
        Ok(Self {
            fast,
            fast_ac,
            max_code,
            min_code,
            first_index,
            symbols: symbols.to_vec(),
        })
    }
}

/// Entropy-coded data reader with libjpeg's conventions: stuffed zero
/// bytes are removed, and once a marker is reached it supplies zeros.
pub(super) struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    count: u32,
    at_marker: bool,
}

impl<'a> Bits<'a> {
    pub(super) fn new(data: &'a [u8], pos: usize) -> Self {
        Self {
            data,
            pos,
            acc: 0,
            count: 0,
            at_marker: false,
        }
    }

    fn fill(&mut self) {
        // Whole bytes at once while the next eight hold no 0xFF, the only
        // byte that needs the careful path (stuffing, markers).
        if !self.at_marker
            && let Some(word) = self.data.get(self.pos..self.pos + 8)
        {
            let word = u64::from_be_bytes(word.try_into().unwrap_or_default());
            let inverted = !word;
            let has_ff =
                inverted.wrapping_sub(0x0101_0101_0101_0101) & !inverted & 0x8080_8080_8080_8080
                    != 0;
            if !has_ff {
                let bytes = (64 - self.count) / 8; // >= 1: fill runs at count <= 56
                let taken = word >> (64 - 8 * bytes);
                self.acc |= taken << (64 - 8 * bytes - self.count);
                self.count += 8 * bytes;
                self.pos += bytes as usize;
                return;
            }
        }
        while self.count <= 56 {
            let mut byte = 0u8;
            if !self.at_marker && self.pos < self.data.len() {
                byte = self.data[self.pos];
                if byte == 0xFF {
                    let mut next = self.pos + 1;
                    while self.data.get(next) == Some(&0xFF) {
                        next += 1;
                    }
                    if self.data.get(next) == Some(&0) {
                        self.pos = next + 1;
                    } else {
                        // A marker (or the end): leave `pos` on its last 0xFF.
                        self.pos = next - 1;
                        self.at_marker = true;
                        byte = 0;
                    }
                } else {
                    self.pos += 1;
                }
            }
            self.acc |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
    }

    fn peek(&mut self, n: u32) -> u32 {
        if self.count < n {
            self.fill();
        }
        (self.acc >> (64 - n)) as u32
    }

    fn consume(&mut self, n: u32) {
        self.acc <<= n;
        self.count -= n;
    }

    pub(super) fn bits(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let v = self.peek(n);
        self.consume(n);
        v
    }

    pub(super) fn bit(&mut self) -> bool {
        self.bits(1) == 1
    }

    /// `HUFF_EXTEND(receive(s), s)`.
    pub(super) fn signed(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        extend(self.bits(s) as i32, s)
    }

    /// The next AC coefficient when [`Huffman::fast_ac`] holds it, consumed;
    /// otherwise `None` and nothing consumed.
    pub(super) fn fast_ac(&mut self, table: &Huffman) -> Option<FastAc> {
        let packed = table.fast_ac[self.peek(FAST_BITS) as usize];
        if packed == 0 {
            return None;
        }
        let ac = FastAc::unpack(packed);
        self.consume(ac.len);
        Some(ac)
    }

    pub(super) fn decode(&mut self, table: &Huffman) -> u8 {
        let (len, symbol) = table.fast[self.peek(FAST_BITS) as usize];
        if len > 0 {
            self.consume(u32::from(len));
            return symbol;
        }
        let bits = self.peek(16) as i32;
        for len in FAST_BITS as usize + 1..=16 {
            let code = bits >> (16 - len);
            if code <= table.max_code[len] {
                self.consume(len as u32);
                let index = table.first_index[len] + (code - table.min_code[len]) as usize;
                return table.symbols.get(index).copied().unwrap_or(0);
            }
        }
        // libjpeg substitutes a zero for an invalid code.
        self.consume(16);
        0
    }

    /// Drops buffered bits and steps over the RSTn marker that should follow.
    pub(super) fn restart(&mut self) {
        self.acc = 0;
        self.count = 0;
        self.at_marker = false;
        let mut i = self.pos;
        while i + 1 < self.data.len() {
            if self.data[i] == 0xFF {
                match self.data[i + 1] {
                    0xD0..=0xD7 => {
                        self.pos = i + 2;
                        return;
                    }
                    0x00 | 0xFF => {}
                    _ => return, // another marker: leave it for the parser
                }
            }
            i += 1;
        }
    }

    /// Position of the next marker after the scan data.
    pub(super) fn next_marker(&self) -> usize {
        let mut i = self.pos;
        while i + 1 < self.data.len() {
            if self.data[i] == 0xFF && !matches!(self.data[i + 1], 0x00 | 0xFF | 0xD0..=0xD7) {
                return i;
            }
            i += 1;
        }
        self.data.len()
    }
}

pub(super) fn read_huffman_tables(
    mut body: &[u8],
    dc: &mut [Option<Huffman>; 4],
    ac: &mut [Option<Huffman>; 4],
) -> Result<()> {
    while let Some((&tc_th, rest)) = body.split_first() {
        let counts: [u8; 16] = rest
            .get(..16)
            .and_then(|c| c.try_into().ok())
            .ok_or(Failure::Corrupt("short JPEG Huffman table"))?;
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let symbols = rest
            .get(16..16 + total)
            .ok_or(Failure::Corrupt("short JPEG Huffman table"))?;
        if total > 256 {
            return Err(Failure::Corrupt("bad JPEG Huffman table"));
        }
        let is_dc = tc_th >> 4 == 0;
        if is_dc && symbols.iter().any(|&s| s > 15) {
            // libjpeg rejects these too; they would overflow the bit reader.
            return Err(Failure::Corrupt("bad JPEG DC Huffman table"));
        }
        let table = Huffman::new(&counts, symbols)?;
        let slots = if is_dc { &mut *dc } else { &mut *ac };
        *slots
            .get_mut(usize::from(tc_th & 15))
            .ok_or(Failure::Corrupt("bad Huffman table index"))? = Some(table);
        body = &rest[16 + total..];
    }
    Ok(())
}
