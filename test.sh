#!/usr/bin/env bash
# Every test: the Rust suite (`cargo test`), then the Python package, built
# and installed the way users install it (pip install ./python), and its
# pytest suite. Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"
cargo test "$@"
python/test.sh
