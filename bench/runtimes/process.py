"""Processes on this machine: which one serves a loopback endpoint, and its resident memory."""

from __future__ import annotations

import os
import threading
import time

import psutil


def loopback_server(base_url: str) -> tuple[int, str] | None:
    """(pid, process name) of the process listening for a loopback endpoint, when it can be seen.

    Lets bench measure the resident memory of servers it did not start (Ollama, llama.cpp,
    LM Studio, Foundry Local on this machine). None for remote hosts or when the OS hides it.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(base_url.partition("?")[0])
    host = parts.hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        for c in psutil.net_connections(kind="inet"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                if c.pid == os.getpid():
                    return None  # the server runs inside bench itself (tests): nothing to measure apart
                return c.pid, psutil.Process(c.pid).name()
    except (psutil.Error, OSError):
        return None
    return None


class MemorySampler(threading.Thread):
    """Samples a process tree's resident memory in the background; keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.05, tree_refresh_s: float = 1.0):
        super().__init__(daemon=True, name=f"rss-{pid}")
        self.proc = psutil.Process(pid)
        self.interval_s = interval_s
        self.tree_refresh_s = tree_refresh_s
        self.peak = 0
        self._halt = threading.Event()
        self._tree: list[psutil.Process] = []
        self._tree_at = float("-inf")

    def rss(self) -> int:
        """The tree's resident memory now. Finding the tree reads every process of the machine,
        so it is refreshed once a second (a child started since counts from the next refresh);
        each sample then reads only the tree's own processes."""
        now = time.monotonic()
        try:
            if now - self._tree_at >= self.tree_refresh_s:
                self._tree, self._tree_at = [self.proc, *self.proc.children(recursive=True)], now
            total = self.proc.memory_info().rss
        except psutil.Error:
            return 0  # the server itself is gone
        for p in self._tree[1:]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue  # a child that exited
        return total

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, self.rss())
            self._halt.wait(self.interval_s)

    def stop(self) -> int:
        self._halt.set()
        self.join(timeout=2)
        return self.peak
