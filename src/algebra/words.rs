//! The word loops of union, intersection and difference.
//!
//! Each loop reads its inputs once, in place, and writes each output word
//! once per group of inputs. The output is processed in blocks that stay in
//! the L1 cache while the inputs stream past, and inputs are taken four at
//! a time so that a block is loaded and stored once per four inputs. The
//! loops are plain `u64` operations over slices of equal length, which the
//! compiler vectorises to the widest registers the target allows.

use super::alloc::zeroed_u64;
use super::split::{split_into, threads_for};

/// Output words per block: 16 KiB, half a typical L1 data cache.
const BLOCK: usize = 2048;

/// A word-wise combination of several inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Bitwise OR of all inputs.
    Or,
    /// Bitwise AND of all inputs.
    And,
    /// The first input AND NOT each of the others.
    AndNot,
}

/// Combines `inputs` (each at least `words` long) word by word into a new
/// vector of `words` words; the bits of the last word at or past `bits` are
/// cleared. `inputs` must not be empty.
pub(crate) fn combine(op: Op, inputs: &[&[u64]], words: usize, bits: usize) -> Vec<u64> {
    let mut out = zeroed_u64(words);
    let threads = threads_for(words, inputs.len());
    split_into(&mut out, words, 1, threads, |first, chunk| {
        for (b, blk) in chunk.chunks_mut(BLOCK).enumerate() {
            let at = first + b * BLOCK;
            combine_block(op, inputs, at, blk);
        }
    });
    mask_tail(&mut out, bits);
    out
}

/// The words `at..at + len` of `input`. The callers have checked that every
/// input holds at least the output's words, so this is the full range; a
/// shorter input (impossible) gives a shorter slice, which the loops skip.
fn part(input: &[u64], at: usize, len: usize) -> &[u64] {
    let s = input.get(at..).unwrap_or(&[]);
    &s[..s.len().min(len)]
}

fn combine_block(op: Op, inputs: &[&[u64]], at: usize, out: &mut [u64]) {
    let n = out.len();
    let Some((first, rest)) = inputs.split_first() else {
        return;
    };
    let first = part(first, at, n);
    debug_assert_eq!(first.len(), n);
    out.iter_mut().zip(first).for_each(|(o, x)| *o = *x);
    let mut groups = rest.chunks_exact(4);
    for g in &mut groups {
        let (a, b, c, d) = (
            part(g[0], at, n),
            part(g[1], at, n),
            part(g[2], at, n),
            part(g[3], at, n),
        );
        if a.len() != n || b.len() != n || c.len() != n || d.len() != n {
            debug_assert!(false, "an input is shorter than the output");
            continue;
        }
        match op {
            Op::Or => {
                for ((((o, a), b), c), d) in out.iter_mut().zip(a).zip(b).zip(c).zip(d) {
                    *o |= a | b | c | d;
                }
            }
            Op::And => {
                for ((((o, a), b), c), d) in out.iter_mut().zip(a).zip(b).zip(c).zip(d) {
                    *o &= a & b & c & d;
                }
            }
            Op::AndNot => {
                for ((((o, a), b), c), d) in out.iter_mut().zip(a).zip(b).zip(c).zip(d) {
                    *o &= !(a | b | c | d);
                }
            }
        }
    }
    for x in groups.remainder() {
        let x = part(x, at, n);
        if x.len() != n {
            debug_assert!(false, "an input is shorter than the output");
            continue;
        }
        match op {
            Op::Or => out.iter_mut().zip(x).for_each(|(o, x)| *o |= x),
            Op::And => out.iter_mut().zip(x).for_each(|(o, x)| *o &= x),
            Op::AndNot => out.iter_mut().zip(x).for_each(|(o, x)| *o &= !x),
        }
    }
}

/// Clears the bits at or past `bits` in the last word, so that a result
/// never carries bits past its end even if an input did.
pub(crate) fn mask_tail(words: &mut [u64], bits: usize) {
    let used = bits % 64;
    if used != 0 {
        if let Some(last) = words.get_mut(bits / 64) {
            *last &= (1u64 << used) - 1;
        }
    }
}
