#!/usr/bin/env bash
# Builds and installs the Python package with pip into a virtualenv under
# target/ (made on first use, with maturin, pytest, numpy, bitarray, orjson,
# ruff and moto's S3 server for the remote-tier test), lints it with ruff,
# and runs its pytest suite.
#
# Environment: PYTHON (default python3, 3.11 or newer); SCOPECACHE_VENV (the
# virtualenv, default target/python-venv); SCOPECACHE_ORIGINAL (the folder of
# the original manager's fixed copy, default ../shared/anchors beside the
# repository: the side-by-side tests skip without it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
venv="${SCOPECACHE_VENV:-$root/target/python-venv}"
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
# The build backend runs the `maturin` of the virtualenv.
export PATH="$venv/bin:$PATH"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "maturin>=1.7,<2" pytest numpy bitarray orjson ruff "moto[server]>=5.2"
# pip install ./python, without an isolated build environment so that the
# maturin just installed is used and no download happens on each run.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-build-isolation --force-reinstall --no-deps "$here"
"$venv/bin/ruff" check "$here" "$root/tests/format_reader"
"$venv/bin/ruff" format --check "$here"
# pytest from another folder, so that `import scopecache` is the installed
# package and not the source folder.
cd "$here/tests"
exec "$venv/bin/pytest" -q -p no:cacheprovider .
