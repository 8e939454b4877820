"""The README's walk-through, run verbatim in a fresh shell against the live daemon its first line starts.

The block between ``<!-- walk-through ... -->`` and ``<!-- /walk-through -->`` is run line by line in one
``bash`` (so ``export`` and ``CID=$(...)`` carry over), in an empty folder, with the venv first on PATH,
no ``MODELPACK_*`` variable inherited, and only ``MODELPACK_REGISTRY`` (plus the port ``serve`` listens on)
pointing at a free port. After a line that ends in ``&`` the harness waits for the daemon to accept
connections, as a reader waits for its ``listening on`` line. Every line must exit 0; the gate must pass.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a real daemon, torch for the demo pack, and the validation sandbox

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- walk-through\b[^>]*-->\s*```sh\n(.*?)```\s*<!-- /walk-through -->", re.S)
ASSIGN = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=\$\(")
DEADLINE_S = 420.0


def walkthrough() -> list[str]:
    """The block's commands, comments and blank lines left out."""
    found = BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(found) == 1, "README.md must hold exactly one marked walk-through block"
    return [line for line in found[0].splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _script(lines: list[str], status: Path, port: int) -> str:
    """Each line as written, followed by the harness's bookkeeping: its exit status, and after a
    backgrounded line, a wait for the port (with a deadline)."""
    wait = (
        f"{shlex.quote(sys.executable)} -c 'import socket,sys,time\n"
        f"end = time.monotonic() + 120\n"
        f"while time.monotonic() < end:\n"
        f'    try: socket.create_connection(("127.0.0.1", {port}), 1).close(); sys.exit(0)\n'
        f"    except OSError: time.sleep(0.1)\n"
        f"sys.exit(98)'"
    )
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        out.append(f'__rc=$?; echo "{i} $__rc" >> {shlex.quote(str(status))}')
        m = ASSIGN.match(line)
        if m:  # `export X=$(cmd)` hides cmd's status: an empty X means cmd failed
            out.append(
                f'[ -n "${{{m.group(1)}}}" ] || {{ echo "{i} empty" >> {shlex.quote(str(status))}; exit 97; }}'
            )
        out.append('[ "$__rc" -eq 0 ] || exit "$__rc"')
        if line.rstrip().endswith("&"):
            out.append(f"{wait} || {{ echo '{i} not-listening' >> {shlex.quote(str(status))}; exit 98; }}")
    return "\n".join(out) + "\n"


@pytest.fixture
def shell_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], int]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(tmp_path / "home"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        MODELPACK_REGISTRY=f"http://127.0.0.1:{port}",
        MODELPACK_SERVER__PORT=str(port),  # where `modelpack serve` listens: the same free port
        COLUMNS="200",
    )
    (tmp_path / "home").mkdir()
    yield env, port


@pytest.mark.timeout(DEADLINE_S + 60)
def test_the_readme_walkthrough_runs_verbatim(tmp_path: Path, shell_env: tuple[dict[str, str], int]) -> None:
    env, port = shell_env
    lines = walkthrough()
    assert lines[0].startswith("modelpack serve") and lines[0].endswith("&")
    assert lines[-1].startswith("modelpack gate ")
    work = tmp_path / "work"
    work.mkdir()
    status = tmp_path / "status"
    script = tmp_path / "walkthrough.sh"
    script.write_text(_script(lines, status, port))
    log = tmp_path / "log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(script)],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=DEADLINE_S)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # the daemon the first line put in the background
            except ProcessLookupError:
                pass
            _wait_gone(proc.pid)
    output = log.read_text(errors="replace")
    steps = [line.split(" ", 1) for line in status.read_text().splitlines()] if status.exists() else []
    failed = [(lines[int(i)], why) for i, why in steps if why != "0"]
    assert rc == 0 and not failed, f"{failed or 'exit ' + str(rc)}\n{output[-6000:]}"
    assert [int(i) for i, _ in steps] == list(range(len(lines)))
    assert re.search(r"^PASS acme/tiny-llm@curated: \d+ check\(s\) passed", output, re.M), output[-4000:]
    assert (work / "copy" / "manifest.json").is_file()


def _wait_gone(pgid: int) -> None:
    """The walk-through's process group has exited (SIGKILL after a grace period)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_the_walkthrough_block_is_found_and_uses_the_default_registry() -> None:
    lines = walkthrough()
    assert len(lines) >= 10
    assert not any("--registry" in line for line in lines)  # MODELPACK_REGISTRY or the default, never a flag
