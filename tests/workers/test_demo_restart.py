"""scripts/demo.sh keeps the demo up when the worker dies, and Ctrl-C still stops it all.

The script's own supervision is what is under test, so `streetloop` and `gunicorn` are
small stand-ins (STREETLOOP_DEMO_BIN): the worker stand-in exits 1 on its first run, as a
crashed worker does, and sleeps on the second; nothing listens on the network."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.workers.own_cluster import ROOT, wait_for

STREETLOOP = """\
#!/usr/bin/env bash
case "$1" in
  worker)
    echo "$$" >>"$STATE/worker_runs"
    if [[ $(wc -l <"$STATE/worker_runs") -eq 1 ]]; then exit 1; fi
    trap 'echo stopped >>"$STATE/worker_stops"; exit 0' TERM INT
    while :; do sleep 0.1; done ;;
  seed) [[ "$2" == credentials ]] && echo "  admin admin@demo" ;;
esac
exit 0
"""

# Runs argv[1:] with SIGINT at its default disposition (exec keeps an ignored signal ignored).
_WITH_CTRL_C = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)

GUNICORN = """\
#!/usr/bin/env bash
trap 'echo stopped >>"$STATE/web_stops"; exit 0' TERM INT
while :; do sleep 0.1; done
"""


def _stand_ins(bin_dir: Path) -> None:
    bin_dir.mkdir()
    for name, body in (
        ("streetloop", STREETLOOP),
        ("gunicorn", GUNICORN),
        ("python", "#!/bin/sh\nexit 0\n"),
    ):
        path = bin_dir / name
        path.write_text(textwrap.dedent(body))
        path.chmod(0o755)


def test_demo_restarts_a_crashed_worker_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    _stand_ins(tmp_path / "bin")
    state = tmp_path / "state"
    state.mkdir()
    log = (tmp_path / "demo.log").open("w")
    env = {
        **os.environ,
        "STREETLOOP_DEMO_BIN": str(tmp_path / "bin"),
        "STATE": str(state),
        # Set, so the script neither starts a cluster nor writes a key into the checkout.
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/unused",
        "STREETLOOP_SECRET_KEY": "test",
        "STREETLOOP_ROAD_DATA": str(tmp_path / "roads"),
    }
    demo = subprocess.Popen(
        # As from a terminal, where Ctrl-C is not ignored: a test run started in the
        # background (`cmd &` in a script, nohup) inherits SIGINT ignored, and a shell that
        # starts with a signal ignored can never trap it, so demo.sh would not see Ctrl-C.
        [sys.executable, "-c", _WITH_CTRL_C, "bash", str(ROOT / "scripts" / "demo.sh")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        runs = state / "worker_runs"
        wait_for(
            lambda: runs.exists() and len(runs.read_text().split()) == 2,
            20,
            "the worker to be started again",
        )
        assert demo.poll() is None, "the demo stopped with its worker"
        output = (tmp_path / "demo.log").read_text()
        assert "worker exited (status 1); restarting it in 1s" in output
        assert "worker restarted" in output
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole process group
        assert demo.wait(20) == 0
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        log.close()
    second = int(runs.read_text().split()[1])
    assert (state / "worker_stops").read_text().split() == ["stopped"]
    assert (state / "web_stops").exists()
    try:
        os.kill(second, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError("the restarted worker outlived the demo")
