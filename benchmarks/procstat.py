"""Processes of a running stack, read from ``/proc``: which PIDs belong to which
service, their CPU time and their memory, and a sampler of the stack's peak memory.

Every child of ``gpubill.launcher.Stack`` runs in its own process group (its PID is
the group id), so a service's processes are those whose ``/proc/PID/stat`` names that
group: gunicorn's master and workers, a Celery worker's main process and its prefork
pool. Fields of ``/proc/PID/stat`` used (proc(5)): 5 ``pgrp``, 14 ``utime`` and
15 ``stime`` in clock ticks (``SC_CLK_TCK``). Memory: ``Pss`` of
``/proc/PID/smaps_rollup`` (proportional set size: shared pages split between the
processes sharing them, so a sum over processes counts each page once) when readable,
else ``VmRSS`` of ``/proc/PID/status`` (a sum over-counts pages shared after fork).
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, list[str]] | None:
    """(command name, fields after it: index 0 = field 3) of ``/proc/PID/stat``, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.find("(") + 1:raw.rfind(")")], raw[raw.rfind(")") + 2:].split()


def _live() -> Iterator[tuple[int, str, list[str]]]:
    """(pid, command name, stat fields after it) of every live process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            yield int(entry.name), *stat


def group_pids(pgids: dict[str, int]) -> dict[str, list[int]]:
    """``{service: [pid, ...]}``: every live process whose process group is the
    service's (``pgids``: service name → group id, the child's PID)."""
    by_group = {pgid: name for name, pgid in pgids.items()}
    found: dict[str, list[int]] = {name: [] for name in pgids}
    for pid, _comm, fields in _live():
        if int(fields[2]) in by_group:
            found[by_group[int(fields[2])]].append(pid)
    return found


def stack_groups(stack: object) -> dict[str, int]:
    """Service name → process group id of a started ``Stack`` (its ``children``)."""
    return {c.name: c.proc.pid for c in getattr(stack, "children")}  # noqa: B009


def cpu_ms(pids: Iterable[int]) -> dict[int, float]:
    """``{pid: utime + stime in ms}`` of the live ones among ``pids``."""
    out: dict[int, float] = {}
    for pid in pids:
        stat = _stat(pid)
        if stat is not None:
            out[pid] = (int(stat[1][11]) + int(stat[1][12])) * TICK_MS
    return out


class CpuMeter:
    """CPU time of each service between ``start()`` and ``stop()`` (ms), summed over
    its processes; a process that appears meanwhile counts from 0."""

    def __init__(self, groups: dict[str, int]) -> None:
        self.groups = groups
        self._before: dict[int, float] = {}

    def start(self) -> CpuMeter:
        pids = [p for ps in group_pids(self.groups).values() for p in ps]
        self._before = cpu_ms(pids)
        return self

    def stop(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for name, pids in group_pids(self.groups).items():
            now = cpu_ms(pids)
            used[name] = sum(ms - self._before.get(pid, 0.0) for pid, ms in now.items())
        return used


def machine_busy_ms() -> float:
    """CPU time all cores have spent busy since boot, in ms: the first line of
    ``/proc/stat`` (proc(5): user, nice, system, idle, iowait, irq, softirq, steal, …, in
    ``USER_HZ`` ticks). Idle and iowait are not busy; nor is steal (time the hypervisor
    gave other guests, not work done here); guest time is already inside user."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) * TICK_MS


def command_pids(*names: str) -> list[int]:
    """Live processes whose command name (``/proc/PID/stat``'s, as ``comm``) is one of ``names``."""
    return [pid for pid, comm, _fields in _live() if comm in names]


class MachineMeter:
    """The whole machine's CPU between ``start()`` and ``stop()`` (ms), with what
    PostgreSQL's and Redis's server processes and this process (the benchmark: its
    client threads, the notification sink, the memory sampler) used of it; a server
    process started meanwhile counts from 0, one that ended meanwhile is missed (pooled
    connections keep their backends)."""

    SERVERS = {"PostgreSQL": ("postgres",), "Redis": ("redis-server",)}  # by command name

    def start(self) -> MachineMeter:
        self._busy = machine_busy_ms()
        self._servers = {name: cpu_ms(command_pids(*comms)) for name, comms in self.SERVERS.items()}
        self._self = cpu_ms([os.getpid()]).get(os.getpid(), 0.0)
        return self

    def stop(self) -> dict[str, float]:
        used = {"machine": machine_busy_ms() - self._busy,
                "benchmark process": cpu_ms([os.getpid()]).get(os.getpid(), 0.0) - self._self}
        for name, comms in self.SERVERS.items():
            before = self._servers[name]
            used[name] = sum(ms - before.get(pid, 0.0) for pid, ms in cpu_ms(command_pids(*comms)).items())
        return used


def memory_kind() -> str:
    """"PSS" if ``/proc/self/smaps_rollup`` is readable here, else "RSS"."""
    try:
        Path("/proc/self/smaps_rollup").read_text()
        return "PSS"
    except OSError:
        return "RSS"


def memory_kib(pid: int, kind: str) -> int:
    """Pss (``kind`` "PSS") or VmRSS of ``pid`` in KiB; 0 if it is gone."""
    try:
        if kind == "PSS":
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            key = "Pss:"
        else:
            text = Path(f"/proc/{pid}/status").read_text()
            key = "VmRSS:"
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith(key)), 0)


def stack_memory_mib(groups: dict[str, int], kind: str) -> dict[str, float]:
    """``{service: MiB}`` now, summed over each service's processes."""
    return {name: sum(memory_kib(p, kind) for p in pids) / 1024
            for name, pids in group_pids(groups).items()}


class PeakSampler:
    """Samples the whole stack's memory (sum over services) every ``interval_s`` in a
    thread; ``peak_mib`` is the largest sum seen and ``peak_by_service`` its split."""

    def __init__(self, groups: dict[str, int], kind: str, interval_s: float = 0.25) -> None:
        self.groups, self.kind, self.interval_s = groups, kind, interval_s
        self.peak_mib = 0.0
        self.peak_by_service: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="peak-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            now = stack_memory_mib(self.groups, self.kind)
            if sum(now.values()) > self.peak_mib:
                self.peak_mib, self.peak_by_service = sum(now.values()), now
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def loadavg() -> str:
    """The 1/5/15-minute load averages, e.g. ``"1.20 0.95 0.80"``."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def wait_until(probe: object, timeout_s: float, every_s: float = 0.1) -> bool:
    """Poll ``probe()`` until truthy (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():  # type: ignore[operator]
            return True
        time.sleep(every_s)
    return False

