"""The `arsync` command line: a typer app whose errors map to documented exit codes."""

from __future__ import annotations

import contextlib
import socket
import sys
from typing import Annotated

import typer

from arsync import __version__
from arsync.errors import ArsyncError

app = typer.Typer(
    name="arsync",
    help=(
        "Get small firms paid: arsync syncs open invoices from QuickBooks Online and Xero, "
        "runs the firm's collection plan and writes every step back into the ledger."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sandbox_app = typer.Typer(
    help="The built-in simulation of QuickBooks Online and Xero (for trying arsync and tests).",
    no_args_is_help=True,
)
app.add_typer(sandbox_app, name="sandbox")


def _fail(err: ArsyncError) -> typer.Exit:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    return typer.Exit(err.exit_code)


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the generated books.")] = 1,
    customers: Annotated[int, typer.Option(min=1, max=10_000, help="Customers per company.")] = 40,
    invoices: Annotated[int, typer.Option(min=0, max=100_000, help="Invoices per company.")] = 300,
) -> None:
    """Try arsync without an account: the two demo companies' receivables, aged.

    Starts the sandbox on a free loopback port with a QuickBooks Online company and a Xero
    organisation, syncs each into a throw-away store as `arsync sync` would (a full sync; then,
    after a customer pays and a new invoice is raised, an incremental one) and shows what their
    customers owe, aged by days overdue.
    """
    from arsync.demo import render, run_demo
    from arsync.logs import configure

    configure(level="warning")
    try:
        reports = run_demo(seed=seed, customers=customers, invoices=invoices)
    except ArsyncError as err:
        raise _fail(err) from err
    render(reports)


@app.command()
def version() -> None:
    """Print arsync's version."""
    typer.echo(__version__)


@sandbox_app.command("serve")
def sandbox_serve(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: any free).")
    ] = 8765,
    seed: Annotated[int, typer.Option(help="Seed of the generated books.")] = 1,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    customers: Annotated[int, typer.Option(min=1, max=10_000, help="Customers per company.")] = 40,
    invoices: Annotated[int, typer.Option(min=0, max=100_000, help="Invoices per company.")] = 300,
    latency: Annotated[float, typer.Option(min=0, help="Seconds added to every API call.")] = 0.0,
) -> None:
    """Serve the simulated QuickBooks Online and Xero until interrupted (Ctrl-C).

    Prints the base URL that stands for each real host, the demo OAuth clients, the companies
    and two consent-page links to open in a browser.
    """
    import uvicorn

    from arsync.sandbox.core import DEMO_CLIENTS, Sandbox, SandboxSettings
    from arsync.sandbox.server import base_urls, free_port

    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(
            f"warning: serving on {host}: the sandbox has no real security, keep it on loopback",
            fg=typer.colors.YELLOW,
            err=True,
        )
    port = port or free_port(host)
    # Bind before building the books, so a taken port fails at once and clearly.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:  # port taken, address not available
        sock.close()
        typer.secho(
            f"error: cannot serve on {host}:{port}: {err.strerror}", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(2) from err
    sandbox = Sandbox(
        SandboxSettings(seed=seed, customers=customers, invoices=invoices, latency=latency)
    )
    root = f"http://{host}:{port}"
    urls = base_urls(root)
    typer.echo(f"arsync sandbox on {root}")
    for real, local in urls.items():
        typer.echo(f"  {real:<30} → {local}")
    typer.echo("Companies:")
    for t in sandbox.tenants():
        typer.echo(f"  {t.platform:<5} {t.tenant_id:<38} {t.name} ({t.base_currency})")
    typer.echo("OAuth clients (sandbox only):")
    for platform, client in DEMO_CLIENTS.items():
        typer.echo(f"  {platform:<5} client_id={client.client_id} secret={client.client_secret}")
    qbo_auth = (
        f"{urls['appcenter.intuit.com']}/connect/oauth2?client_id="
        f"{DEMO_CLIENTS['qbo'].client_id}&response_type=code&scope=com.intuit.quickbooks.accounting"
        f"&redirect_uri=http://localhost/callback&state=try-me"
    )
    xero_auth = (
        f"{urls['login.xero.com']}/identity/connect/authorize?client_id="
        f"{DEMO_CLIENTS['xero'].client_id}&response_type=code"
        f"&scope=offline_access%20accounting.invoices&redirect_uri=http://localhost/callback"
        f"&state=try-me"
    )
    typer.echo("Consent pages to open in a browser:")
    typer.echo(f"  {qbo_auth}")
    typer.echo(f"  {xero_auth}")
    server = uvicorn.Server(
        uvicorn.Config(
            sandbox.asgi_app(),
            host=host,
            port=port,
            log_level="info",
            lifespan="off",
            date_header=False,
        )
    )
    # uvicorn re-raises the Ctrl-C it handled; by then the shutdown was already clean.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    typer.echo("sandbox stopped")


def main() -> None:
    try:
        app()
    except ArsyncError as err:  # pragma: no cover - commands convert their own
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(err.exit_code)
