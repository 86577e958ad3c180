//! The loop of `counts`: for every bit position, how many inputs have it set.
//!
//! Counting bit by bit would cost one branch or one add per bit per input.
//! Instead each input byte is widened through a 256-entry table to eight
//! one-byte counters packed in a `u64` (lane `l` holds bit `l` of the byte),
//! and those are added to a block of packed byte counters: one table load
//! and one 64-bit add per input byte, that is, per eight bits. Byte counters
//! hold at most 255, so after every 255 inputs the block is widened into the
//! `u32` output. The block (256 words of input, 16 KiB of counters) stays in
//! the L1 cache while the inputs stream past.

use super::alloc::zeroed_u32;
use super::split::{split_into, threads_for};

/// Input words per block; the counters of a block take 64 bytes per word.
const BLOCK: usize = 256;

/// Inputs counted in byte counters before they are widened (the most a
/// byte holds).
const GROUP: usize = 255;

/// `SPREAD[b]`: byte lane `l` is bit `l` of `b`.
static SPREAD: [u64; 256] = spread_table();

const fn spread_table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut l = 0;
        while l < 8 {
            t[b] |= (((b >> l) & 1) as u64) << (8 * l);
            l += 1;
        }
        b += 1;
    }
    t
}

/// For each of the first `bits` bit positions, the number of `inputs`
/// (each at least `bits.div_ceil(64)` words long) that have it set.
pub(crate) fn count(inputs: &[&[u64]], bits: usize) -> Vec<u32> {
    let words = bits.div_ceil(64);
    let mut out = zeroed_u32(words * 64);
    let threads = threads_for(words, inputs.len());
    split_into(&mut out, words, 64, threads, |first, chunk| {
        let mut acc = vec![0u64; BLOCK * 8];
        for (b, blk) in chunk.chunks_mut(BLOCK * 64).enumerate() {
            count_block(inputs, first + b * BLOCK, blk, &mut acc);
        }
    });
    out.truncate(bits);
    out
}

/// Counts the words `at..` of every input into `out` (64 counters per
/// word), using `acc` (8 packed counters per input byte) as scratch.
fn count_block(inputs: &[&[u64]], at: usize, out: &mut [u32], acc: &mut [u64]) {
    let n = out.len() / 64;
    let acc = &mut acc[..n * 8];
    for (g, group) in inputs.chunks(GROUP).enumerate() {
        acc.fill(0);
        for input in group {
            let words = input.get(at..).unwrap_or(&[]);
            let words = &words[..words.len().min(n)];
            debug_assert_eq!(words.len(), n);
            for (a, &w) in acc.chunks_exact_mut(8).zip(words) {
                for (j, a) in a.iter_mut().enumerate() {
                    *a += SPREAD[((w >> (8 * j)) & 0xFF) as usize];
                }
            }
        }
        // Lane l of acc[k] counts bit 8k + l of the block: its bytes in
        // little-endian order are the counters in bit order.
        if g == 0 {
            for (o, a) in out.chunks_exact_mut(8).zip(acc.iter()) {
                for (o, c) in o.iter_mut().zip(a.to_le_bytes()) {
                    *o = u32::from(c);
                }
            }
        } else {
            for (o, a) in out.chunks_exact_mut(8).zip(acc.iter()) {
                for (o, c) in o.iter_mut().zip(a.to_le_bytes()) {
                    *o += u32::from(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_spreads_bits_to_byte_lanes() {
        assert_eq!(SPREAD[0], 0);
        assert_eq!(SPREAD[1], 1);
        assert_eq!(SPREAD[0x80], 1 << 56);
        assert_eq!(SPREAD[0xFF], 0x0101_0101_0101_0101);
        assert_eq!(SPREAD[0b101], 0x0001_0001);
    }

    #[test]
    fn every_bit_position_lands_on_its_own_counter() {
        for bit in [
            0usize, 1, 7, 8, 9, 55, 56, 63, 64, 100, 127, 200, 16_383, 16_384, 20_000,
        ] {
            let mut words = vec![0u64; 20_001usize.div_ceil(64)];
            words[bit / 64] |= 1 << (bit % 64);
            let c = count(&[&words, &words], 20_001);
            assert_eq!(c[bit], 2, "bit {bit}");
            assert_eq!(c.iter().map(|&x| u64::from(x)).sum::<u64>(), 2, "bit {bit}");
        }
    }

    #[test]
    fn more_than_255_inputs_do_not_wrap() {
        let all = [u64::MAX; 3];
        let some = [0x8000_0000_0000_0001u64; 3];
        let mut inputs: Vec<&[u64]> = vec![&all; 300];
        inputs.extend([&some[..]; 11]);
        let c = count(&inputs, 130);
        assert_eq!(c.len(), 130);
        assert_eq!(c[0], 311);
        assert_eq!(c[1], 300);
        assert_eq!(c[63], 311);
        assert_eq!(c[64], 311);
        assert_eq!(c[129], 300);
    }
}
