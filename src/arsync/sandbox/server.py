"""Serve a sandbox with uvicorn on loopback, in the foreground or on a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from arsync.sandbox.core import Sandbox


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class SandboxServer:
    """A running sandbox: `with SandboxServer(Sandbox()) as server: server.url`.

    `wrap` puts a layer around the sandbox's ASGI app (e.g. a validating proxy in a test).
    """

    def __init__(
        self,
        sandbox: Sandbox,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        wrap: Callable[[ASGIApp], ASGIApp] | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.host = host
        self.port = port or free_port(host)
        app = sandbox.asgi_app()
        config = uvicorn.Config(
            wrap(app) if wrap is not None else app,
            host=host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            # a SLOW fault may still be sleeping at shutdown: do not wait it out
            timeout_graceful_shutdown=2,
            # the sandbox stamps Date from its own clock, as a platform's servers do from theirs
            date_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def urls(self) -> dict[str, str]:
        """Base URLs that replace each real host."""
        return base_urls(self.url)

    def start(self, timeout: float = 10.0) -> SandboxServer:
        self._thread = threading.Thread(
            target=self._server.run, name=f"sandbox:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def base_urls(root: str) -> dict[str, str]:
    """The sandbox URL that stands for each real host (the path below it is the real one)."""
    root = root.rstrip("/")
    return {
        # QuickBooks Online
        "quickbooks.api.intuit.com": f"{root}/qbo/api",
        "oauth.platform.intuit.com": f"{root}/qbo/oauth",
        "appcenter.intuit.com": f"{root}/qbo/appcenter",
        "developer.intuit.com": f"{root}/qbo/developer",
        "developer.api.intuit.com": f"{root}/qbo/developer",
        "accounts.platform.intuit.com": f"{root}/qbo/accounts",
        # Xero
        "api.xero.com": f"{root}/xero/api",
        "identity.xero.com": f"{root}/xero/identity",
        "login.xero.com": f"{root}/xero/login",
        # control plane
        "sandbox": f"{root}/_sandbox",
    }
