"""A sandbox served by a process of its own, for benchmarks that measure arsync apart from it."""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable, Iterator

import httpx


@contextlib.contextmanager
def sandbox_process(serve: Callable[..., None], *args: object) -> Iterator[tuple[str, int]]:
    """Run `serve(port, *args)` in a spawned process; yields (base URL, port) once it answers."""
    from arsync.sandbox.server import free_port

    port = free_port()
    proc = multiprocessing.get_context("spawn").Process(
        target=serve, args=(port, *args), daemon=True
    )
    proc.start()
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                httpx.get(f"{url}/_sandbox/", timeout=1)
                break
            except httpx.TransportError:
                if not proc.is_alive():
                    raise SystemExit("the sandbox process died while starting") from None
                time.sleep(0.5)
        yield url, port
    finally:
        proc.kill()
