"""The CPU time a peer's timed run used, by who used it.

Three parts, over the run's timed window (bench.common.TimedWindow): the peer's own processes
(the process running it and its children: a Celery worker and its pool), the PostgreSQL backends
serving the benchmark's database, and the Prefect server (its process tree and the backends of
its own database) when the peer uses one (the server's pid and database come in the
environment, SERVER_PID and SERVER_DATABASE). On a machine of N cores, a run whose total is near
N times its wall time cannot go faster without doing less work, and the split says whose work it
is. CPU time is also steadier than wall time on a shared host: a hypervisor's steal stretches a
run, not the work in it.

Backends come and go (a pool's overflow connection closes when it is returned): a thread samples
them every SAMPLE_S, and one that exits between two samples loses what it used since the last
one. A sample lists the processes and reads the CPU of the backends only (about 0.1 ms).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

import psutil

SERVER_PID = "BENCH_PREFECT_SERVER_PID"
SERVER_DATABASE = "BENCH_PREFECT_SERVER_DATABASE"
SAMPLE_S = 0.1


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants ([] once it has exited)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_rss(pid: int) -> int:
    """The resident memory (bytes) of a process and all its descendants, at this moment."""
    total = 0
    for process in process_tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.Error:  # it exited meanwhile
            continue
    return total


class _Used:
    """CPU per process since the first time it was seen (0 for one started after `start`)."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def see(self, processes: Iterable[psutil.Process], *, started: bool) -> None:
        for process in processes:
            try:
                cpu = _cpu(process)
            except psutil.Error:
                continue
            self.first.setdefault(process.pid, cpu if not started else 0.0)
            self.last[process.pid] = cpu

    def total(self) -> float:
        return sum(cpu - self.first[pid] for pid, cpu in self.last.items())


class CpuMeter:
    """`start()` when the timed window opens, `stop()` when it closes: seconds per part."""

    def __init__(self, database: str, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.databases = {"postgres": database}  # part -> the database its backends serve
        self.server_pid = int(env[SERVER_PID]) if env.get(SERVER_PID) else None
        if self.server_pid is not None:
            self.databases["prefect_server"] = env.get(SERVER_DATABASE, "")
        self._used = {part: _Used() for part in ("peer", *self.databases)}
        self._serves: dict[int, str | None] = {}  # pid -> the part whose database it serves
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self._started = False

    def start(self) -> CpuMeter:
        self._trees()
        self._backends()
        self._started = True
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=5)
        self._trees()
        self._backends()
        return {part: round(used.total(), 3) for part, used in self._used.items()}

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._backends()

    def _trees(self) -> None:
        """The peer's processes and the server's, which live through the run: read at its start
        and end only (walking a process tree reads every process's parent)."""
        started = self._started
        self._used["peer"].see(process_tree(os.getpid()), started=started)
        if self.server_pid is not None:
            self._used["prefect_server"].see(process_tree(self.server_pid), started=started)

    def _backends(self) -> None:
        started = self._started
        backends: dict[str, list[psutil.Process]] = {part: [] for part in self.databases}
        for pid in psutil.pids():
            part = self._part_of(pid)
            if part is None:
                continue
            try:
                backends[part].append(psutil.Process(pid))
            except psutil.Error:  # it exited meanwhile
                continue
        for part, processes in backends.items():
            self._used[part].see(processes, started=started)

    def _part_of(self, pid: int) -> str | None:
        """Which database a backend serves (its title names it: `postgres: ... user db ...`)."""
        if pid not in self._serves:
            try:
                title = " ".join(psutil.Process(pid).cmdline()) + " "
            except psutil.Error:
                title = ""
            found = [
                part
                for part, database in self.databases.items()
                if database and title.startswith("postgres:") and f" {database} " in title
            ]
            self._serves[pid] = found[0] if found else None
        return self._serves[pid]
