"""``raymix serve OUT`` as a process: it starts its own Ray, prints its URL and the swap
command, answers /healthz and /predict, ``raymix serve --swap OUT2 --address ADDR`` (a second
process) makes it serve another run, and SIGINT or SIGTERM stops it cleanly (exit status 0,
its port free again). Every wait is bounded; requests go to 127.0.0.1 only."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from .conftest import HTTP_TIMEOUT, free_port
from .rows import validation_rows

pytestmark = [pytest.mark.slow, pytest.mark.ray]

START_S = 300.0  # a local Ray, Serve and the replica, on a loaded 2-core machine
STOP_S = 120.0
RAYMIX = [sys.executable, "-m", "raymix"]


def environment() -> dict:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # its own local Ray, not the test session's
    return env


class Process:
    """A ``raymix serve`` process and its stdout, line by line (read in a thread)."""

    def __init__(self, argv: list[str]):
        self.popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment(),
            start_new_session=True,  # its own process group: a stray one can be ended
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r}; output so far: {self.seen[-20:]}")

    def end(self) -> None:
        if self.popen.poll() is None:  # only if the test failed before stopping it
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(STOP_S)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_healthy(client: httpx.Client, url: str) -> dict:
    deadline = time.monotonic() + START_S
    while True:
        try:
            response = client.get(f"{url}/healthz")
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url}/healthz not answering in {START_S:.0f} s"
        time.sleep(0.5)


def predict_one(client: httpx.Client, url: str, row: dict) -> dict:
    response = client.post(f"{url}/predict", json={"rows": [row]})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_serve_process_answers_swaps_and_stops_on_a_signal(
    stop, synthetic_run, synthetic_run_2
):
    port = free_port()
    uids, rows = validation_rows(synthetic_run.output)
    serving = Process([*RAYMIX, "serve", str(synthetic_run.output), "--port", str(port)])
    try:
        url = serving.wait_for(r"serving '.*' from .* at (http://\S+)/predict", START_S)[1]
        assert url == f"http://127.0.0.1:{port}"
        address = serving.wait_for(r"swap: raymix serve --swap OUT2 --address (\S+)", 30)[1]
        with httpx.Client(timeout=HTTP_TIMEOUT) as client:
            assert wait_healthy(client, url) == {"status": "ok", "run": "synthetic-glmix"}
            body = predict_one(client, url, rows[0])
            assert body["output"] == str(synthetic_run.output.resolve())
            expected = synthetic_run.expected([uids[0]])[0]
            assert body["predictions"][0]["score"] == pytest.approx(expected, abs=1e-6)
            if stop == signal.SIGINT:  # the swap command, against this process's Ray
                swap = subprocess.run(
                    [*RAYMIX, "serve", "--swap", str(synthetic_run_2.output), "--address", address],
                    capture_output=True,
                    text=True,
                    timeout=START_S,
                    env=environment(),
                )
                assert swap.returncode == 0, swap.stderr[-2000:]
                assert f"from {synthetic_run_2.output.resolve()} on 1 replica(s)" in swap.stdout
                body = predict_one(client, url, rows[0])
                assert body["output"] == str(synthetic_run_2.output.resolve())
                expected = synthetic_run_2.expected([uids[0]])[0]
                assert body["predictions"][0]["score"] == pytest.approx(expected, abs=1e-6)
        serving.popen.send_signal(stop)
        assert serving.popen.wait(STOP_S) == 0, serving.seen[-20:]
        assert port_is_free(port)
    finally:
        serving.end()
