"""The remote tier from Python, against moto's S3 server on loopback: two
drop-in managers with different cache folders (two machines) share scopes
through one bucket. Skipped, loudly, when the server cannot start, unless
CI is set (then the test fails)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import warnings

import numpy as np
import pytest
from bitarray import bitarray

import scopecache
from scopecache import CacheScopeManager, ConfigError, ScopeCache

pytestmark = pytest.mark.skipif(not scopecache.has_remote(), reason="built without the remote tier")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unavailable(why: str) -> None:
    msg = f"the S3 test server (moto) could not be started: {why}; install moto[server]"
    if os.environ.get("CI"):
        pytest.fail(msg)
    warnings.warn(f"SKIPPING REMOTE TEST: {msg}", stacklevel=2)
    print(f"\n!!!!!!!! SKIPPING REMOTE TEST: {msg} !!!!!!!!\n", file=sys.stderr)
    pytest.skip(msg)


@pytest.fixture
def s3(monkeypatch):
    """The endpoint of a fresh moto server, with a bucket "shared" and the
    AWS_* variables set as a client machine would have them."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        proc = subprocess.Popen(
            [
                os.environ.get("SCOPECACHE_TEST_PYTHON", sys.executable),
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError as e:
        unavailable(str(e))
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                unavailable(f"it exited at once ({proc.returncode})")
            try:
                urllib.request.urlopen(endpoint + "/", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    unavailable("it did not answer within 30 s")
                time.sleep(0.1)
        req = urllib.request.Request(endpoint + "/shared", method="PUT")
        urllib.request.urlopen(req, timeout=10).close()
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        for v in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            monkeypatch.delenv(v, raising=False)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


def scope(seed: int, n_nodes: int = 2000, n_links: int = 3000):
    rng = np.random.default_rng(seed)

    class CoverageScope:
        covered_nodes = bitarray((rng.random(n_nodes) < 0.3).tolist())
        covered_links = bitarray((rng.random(n_links) < 0.3).tolist())
        node_id_mapping = {f"node-{i}": i for i in range(n_nodes)}
        link_id_mapping = {f"link-{i}": i for i in range(n_links)}
        total_nodes = n_nodes
        total_links = n_links

    return CoverageScope()


def test_two_machines_share_a_scope(tmp_path, s3):
    kw = {"remote": "s3://shared/team", "remote_endpoint": s3, "remote_allow_http": True}
    a = CacheScopeManager(str(tmp_path / "machine-a"), **kw)
    b = CacheScopeManager(str(tmp_path / "machine-b"), **kw)
    assert a.cache_file != b.cache_file and a.native.remote == "s3://shared/team"
    cs = scope(1)
    assert a.cache_scope("run-1", cs, {"run": 1})
    assert not b.native.contains("run-1")  # not in b's file: only in the bucket
    got = b.load_scope("run-1", None)  # read-through
    assert got is not None
    assert got.covered_nodes.to_bitarray() == cs.covered_nodes
    assert got.covered_links.to_bitarray() == cs.covered_links
    assert dict(got.node_id_mapping) == cs.node_id_mapping
    assert b.get_scope_info("run-1")["config_attributes"] == {"run": 1}
    assert b.native.contains("run-1")  # now in b's own file
    # Settings from the standard environment variables alone (read when the
    # cache is opened): a third machine reads the scope too.
    os.environ["AWS_ENDPOINT_URL"] = s3
    os.environ["AWS_ALLOW_HTTP"] = "true"
    try:
        c = ScopeCache(tmp_path / "machine-c.scopecache", remote="s3://shared/team", fsync=False)
    finally:
        del os.environ["AWS_ENDPOINT_URL"], os.environ["AWS_ALLOW_HTTP"]
    s = c.get("run-1")
    assert s is not None and s.nodes.to_bitarray() == cs.covered_nodes
    assert c.get("never-put") is None


def test_b_computes_a_reads(tmp_path, s3):
    kw = {"remote": "s3://shared/x", "remote_endpoint": s3, "remote_allow_http": True}
    a = CacheScopeManager(str(tmp_path / "a"), **kw)
    b = CacheScopeManager(str(tmp_path / "b"), **kw)
    cs = scope(2)
    made = b.load_or_compute_scope("run-2", None, lambda: (cs, {"by": "b"}))
    got = a.load_or_compute_scope("run-2", None, lambda: pytest.fail("in the bucket"))
    assert got.covered_nodes.to_bitarray() == made.covered_nodes.to_bitarray()
    assert a.get_scope_info("run-2")["config_attributes"] == {"by": "b"}


def test_bad_remote_settings():
    with pytest.raises(ConfigError):
        ScopeCache("/nonexistent/x", remote="gs://bucket")
    with pytest.raises(ConfigError):
        ScopeCache("/nonexistent/x", remote_endpoint="http://127.0.0.1:1")
