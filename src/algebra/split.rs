//! Splitting a word range over the machine's cores.

use std::sync::OnceLock;

/// Input words a thread is given at least: below this, starting a thread
/// costs more than the work it takes over (a spawn costs tens of
/// microseconds, an input word a fraction of a nanosecond).
const MIN_WORK_PER_THREAD: usize = 128 * 1024;

/// Chunks handed to threads start on a multiple of this many words, so
/// that no two threads write into one cache line of the output.
pub(crate) const ALIGN_WORDS: usize = 512;

/// The most threads one operation uses.
const MAX_THREADS: usize = 16;

/// The cores this process may use, asked once (the answer reads cgroup
/// files on Linux, which costs more than a small operation).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// How many threads to use for an output of `words` words computed from
/// `inputs` input slices of that length: one per 128 Ki input words, one
/// chunk of at least [`ALIGN_WORDS`] output words each, at most one per core.
pub(crate) fn threads_for(words: usize, inputs: usize) -> usize {
    let work = words.saturating_mul(inputs.max(1));
    (work / MIN_WORK_PER_THREAD)
        .min(words / ALIGN_WORDS)
        .clamp(1, cores().min(MAX_THREADS))
}

/// Calls `f(first_word, chunk)` on contiguous chunks of `out`, one per
/// thread (at most `threads`), where `out` holds `per_word` items for each
/// of `words` words and `first_word` is the word the chunk starts at. The
/// calling thread takes the last chunk; the others run on scoped threads.
pub(crate) fn split_into<T: Send>(
    out: &mut [T],
    words: usize,
    per_word: usize,
    threads: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    if threads <= 1 || words == 0 || per_word == 0 {
        f(0, out);
        return;
    }
    let chunk_words = words.div_ceil(threads).next_multiple_of(ALIGN_WORDS);
    let chunk = chunk_words.saturating_mul(per_word);
    let f = &f;
    std::thread::scope(|s| {
        let mut chunks = out.chunks_mut(chunk).enumerate().peekable();
        while let Some((k, c)) = chunks.next() {
            if chunks.peek().is_none() {
                f(k * chunk_words, c);
            } else {
                s.spawn(move || f(k * chunk_words, c));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_is_visited_once_with_its_word() {
        for (words, threads) in [(0, 4), (1, 4), (513, 2), (4096, 3), (100_000, 2), (100_000, 7)] {
            let mut out = vec![0usize; words * 2];
            let calls = AtomicUsize::new(0);
            split_into(&mut out, words, 2, threads, |first, chunk| {
                calls.fetch_add(1, Ordering::Relaxed);
                for (k, v) in chunk.iter_mut().enumerate() {
                    *v = first * 2 + k + 1;
                }
            });
            assert!(calls.load(Ordering::Relaxed) <= threads.max(1));
            assert!(
                out.iter().enumerate().all(|(i, &v)| v == i + 1),
                "{words} words, {threads} threads"
            );
        }
    }

    #[test]
    fn small_work_stays_on_one_thread() {
        assert_eq!(threads_for(1000, 50), 1);
        assert_eq!(threads_for(0, 0), 1);
        assert_eq!(threads_for(100, 100_000), 1);
        assert_eq!(threads_for(62_500, 50), cores().min(MAX_THREADS));
    }
}
