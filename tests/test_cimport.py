"""`from ringpool cimport ...`: Cython code drives native work with no GIL.

Builds tests/native/cimport_example.pyx (the README's example) against the
installed ringpool with Cython + setuptools and the system compiler, then runs
it. Skips cleanly where any of those is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import ringpool

np = pytest.importorskip("numpy")
pytest.importorskip("Cython")
pytest.importorskip("setuptools")

HERE = Path(__file__).parent

SETUP = """
import ringpool
from Cython.Build import cythonize
from setuptools import Extension, setup
setup(ext_modules=cythonize(
    [Extension("cimport_example", ["cimport_example.pyx"], include_dirs=ringpool.get_include_dirs())],
    quiet=True))
"""


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc})")
    d = tmp_path_factory.mktemp("cimport")
    shutil.copy(HERE / "native" / "cimport_example.pyx", d)
    (d / "setup.py").write_text(SETUP)
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=d,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    sys.path.insert(0, str(d))
    try:
        import cimport_example
    finally:
        sys.path.remove(str(d))
    return cimport_example


def test_include_dirs_hold_the_headers():
    dirs = ringpool.get_include_dirs()
    for header in ("ringpool.h", "rp_pool.h", "rp_native.h"):
        assert any(os.path.exists(os.path.join(d, header)) for d in dirs), header
    assert os.path.exists(os.path.join(ringpool.get_include(), "ringpool.h"))


@pytest.mark.timeout(300)
def test_parallel_for_from_cython(example, pool_factory):
    pool = pool_factory(2)
    for n, grain in ((1001, 0), (1, 0), (0, 0), (100003, 7)):
        out = np.zeros(max(n, 1))
        if n:
            assert example.squares(pool, out[:n], grain) == 0
            assert (out[:n] == np.arange(n, dtype=float) ** 2).all()


@pytest.mark.timeout(300)
def test_first_error_code_comes_back(example, pool_factory):
    assert example.failing(pool_factory(2), 100) == 9


@pytest.mark.timeout(300)
def test_single_native_task_and_batch(example, pool_factory):
    pool = pool_factory(2)
    assert example.one_task(pool) == (0, 3, 7)
    assert example.many(pool, 1000) == (0, sum(i % 100 for i in range(1000)))


@pytest.mark.timeout(300)
def test_nested_parallel_for_in_a_native_task_runs_inline(example, pool_factory):
    for workers in (1, 2):
        pool = pool_factory(workers)
        out = np.zeros(5001)
        assert example.nested_in_task(pool, out) == (0, 0)
        assert (out == np.arange(5001, dtype=float) ** 2).all()


def test_pool_handle_refuses_bad_or_closed_pools(example, pool_factory):
    with pytest.raises(TypeError, match="pool"):
        example.one_task(object())
    pool = pool_factory(1)
    pool.shutdown()
    with pytest.raises(ringpool.PoolClosed):
        example.one_task(pool)
