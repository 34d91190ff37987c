"""Type information ships and is right: py.typed, the _core stub, and a typed
usage example that ``mypy --strict`` accepts.

The mypy tests skip when mypy is not installed (it is not in the ``test``
extra); ``.ci/run release`` installs it, sets RINGPOOL_REQUIRE_MYPY=1 and runs
this file against the package installed from the sdist, so CI never skips
them. They check the ringpool that is imported: an installed one (site-packages)
is found by mypy as any PEP 561 package; a source checkout (editable install)
is put on MYPYPATH. Either way errors inside ringpool itself are silenced, as
for any installed package: only the user's side, usage.py, must be clean.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import ringpool

HERE = Path(__file__).resolve().parent
USAGE = HERE / "typing" / "usage.py"
ALLOWLIST = HERE / "typing" / "stubtest_allowlist.txt"
PKG_DIR = Path(ringpool.__file__).resolve().parent
MYPY_TIMEOUT_S = 240


def test_type_files_ship() -> None:
    assert (PKG_DIR / "py.typed").is_file()
    assert (PKG_DIR / "_core.pyi").is_file()


def test_usage_example_runs() -> None:
    # The example is also real code: what it asserts holds at run time.
    runpy.run_path(str(USAGE), run_name="usage")["main"]()


def _mypy_setup(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """(config file, environment) for running mypy on the imported ringpool."""
    if os.environ.get("RINGPOOL_REQUIRE_MYPY"):
        import mypy  # noqa: F401  (.ci/run release: a missing mypy must fail, not skip)
    else:
        pytest.importorskip("mypy", reason="mypy is not installed (.ci/run release installs it)")
    # Our own config, so no config file of the checkout is picked up.
    cfg = tmp_path / "mypy.ini"
    cfg.write_text("[mypy]\n[mypy-ringpool.*]\nfollow_imports = silent\n")
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    if PKG_DIR.parent.name not in ("site-packages", "dist-packages"):
        # A source tree (src/ringpool, editable install): mypy cannot follow
        # the editable import hook, so point it at the tree.
        env["MYPYPATH"] = str(PKG_DIR.parent)
    return cfg, env


def _run(cmd: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # cwd: mypy puts its cwd on the search path; the checkout root must not be.
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=MYPY_TIMEOUT_S)


def test_usage_example_is_strictly_typed(tmp_path: Path) -> None:
    cfg, env = _mypy_setup(tmp_path)
    proc = _run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(cfg),
            "--cache-dir",
            str(tmp_path / "cache"),
            str(USAGE),
        ],
        tmp_path,
        env,
    )
    assert proc.returncode == 0, f"mypy --strict {USAGE.name} failed:\n{proc.stdout}{proc.stderr}"


def test_mypy_catches_a_wrong_type(tmp_path: Path) -> None:
    # Guards the test above: the types really flow from the stub (a future's
    # result is int, not Any), so a wrong annotation is an error.
    cfg, env = _mypy_setup(tmp_path)
    bad = tmp_path / "bad_usage.py"
    bad.write_text(
        "import ringpool\n"
        "def square(x: int) -> int:\n"
        "    return x * x\n"
        "with ringpool.Pool(2) as pool:\n"
        "    s: str = pool.submit(square, 3).result()\n"
    )
    proc = _run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(cfg),
            "--cache-dir",
            str(tmp_path / "cache"),
            str(bad),
        ],
        tmp_path,
        env,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'expression has type "int", variable has type "str"' in proc.stdout, proc.stdout


def test_core_stub_matches_runtime(tmp_path: Path) -> None:
    # mypy's stubtest imports the compiled _core and compares it with
    # _core.pyi: a public name or signature changed in _core.pyx without the
    # stub fails here.
    cfg, env = _mypy_setup(tmp_path)
    proc = _run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "--mypy-config-file",
            str(cfg),
            "--allowlist",
            str(ALLOWLIST),
            "ringpool._core",
        ],
        tmp_path,
        env,
    )
    assert proc.returncode == 0, f"stubtest ringpool._core failed:\n{proc.stdout}{proc.stderr}"
