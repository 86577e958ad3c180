#!/usr/bin/env bash
# Every test: the Rust suite (`cargo test`, then the comparison program's
# own test), then the Python package, built
# and installed the way users install it (pip install ./python), and its
# pytest suite. Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"
cargo test "$@"
# The comparison program: its default run, every engine, at a tiny size.
cargo test -p scopecache-compare
python/test.sh
