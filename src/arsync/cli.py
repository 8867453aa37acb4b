"""The `arsync` command line: a typer app whose errors map to documented exit codes."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from arsync import __version__
from arsync.errors import ArsyncError, ConfigError

if TYPE_CHECKING:
    from arsync.collecting import Collecting
    from arsync.config import Config

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
    """Try arsync without an account: 100 days of collection on two demo companies.

    Starts the sandbox on a free loopback port with a QuickBooks Online company, a Xero
    organisation and a mail server of its own; sets arsync up in a throw-away home, links both
    companies and runs the service itself (what `arsync run` runs) on the sandbox's clock
    through 100 days under the standard policy (reminders emailed by the platform, notes on
    the invoices, call tasks, letters, a hand-over the owner approves) while customers pay,
    dispute and promise. Shows what arsync did week by week, two invoices' notes
    as each platform shows them, and what customers still owe, aged by days overdue. About
    half a minute with the default books.
    """
    from arsync.demo import render, run_demo
    from arsync.logs import configure

    configure(level="warning")
    try:
        reports = run_demo(seed=seed, customers=customers, invoices=invoices)
    except ArsyncError as err:
        raise _fail(err) from err
    render(reports)


HomeOption = Annotated[
    Path,
    typer.Option(
        "--home",
        envvar="ARSYNC_HOME",
        help="Folder holding config/arsync.toml and connectors/ (default: the current folder).",
        file_okay=False,
    ),
]


def _configured(home: Path) -> Config:
    """The whole configuration, validated once, with logging set up as it says; exit code 2
    and every problem listed when it is not valid."""
    from arsync.config import load
    from arsync.logs import configure

    try:
        config = load(home)
    except ArsyncError as err:
        configure()
        raise _fail(err) from err
    configure(level=config.settings.log.level, fmt=config.settings.log.format)
    return config


@app.command()
def connect(
    name: Annotated[str, typer.Argument(help="The connector: connectors/NAME.toml.")],
    home: HomeOption = Path(),
    headless: Annotated[
        bool,
        typer.Option(
            "--headless",
            help="No browser on this machine: print the address and paste back where it lands.",
        ),
    ] = False,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the address instead of opening it.")
    ] = False,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Loopback port for the redirect (0: any free).")
    ] = 0,
    tenant: Annotated[
        str | None,
        typer.Option(help="Company to link when the consent covers several (id or name)."),
    ] = None,
) -> None:
    """Link a connector to its company: the platform's consent page, then tokens stored encrypted.

    Opens the platform's consent page in a browser and catches the redirect on a loopback port.
    On a machine without a browser, use --headless: open the printed address anywhere, approve,
    and paste the address the browser ends on. Run it again to reconnect after "reconnect needed".
    """
    from arsync.commands import connect as run_connect

    config = _configured(home)

    def choose(choices: list[Any]) -> Any:
        typer.echo("The consent covers several companies:")
        for i, choice in enumerate(choices, 1):
            typer.echo(f"  {i}. {choice.name} ({choice.tenant_id})")
        number = typer.prompt("Which one should this connector link to", type=int)
        if not 1 <= number <= len(choices):
            raise ConfigError(f"choose a number from 1 to {len(choices)}")
        return choices[number - 1]

    try:
        summary = run_connect(
            config,
            name,
            headless=headless,
            open_browser=not no_browser,
            port=port,
            tenant=tenant,
            echo=typer.echo,
            read_line=lambda prompt: str(typer.prompt(prompt, prompt_suffix="")),
            choose=choose,
        )
    except ArsyncError as err:
        raise _fail(err) from err
    except (KeyboardInterrupt, typer.Abort):
        typer.secho("connect: given up; nothing was stored", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(1) from None
    typer.secho(summary, fg=typer.colors.GREEN)


@app.command()
def sync(
    names: Annotated[
        list[str] | None, typer.Argument(help="Connectors to sync (default: every enabled one).")
    ] = None,
    home: HomeOption = Path(),
    full: Annotated[
        bool, typer.Option("--full", help="Page through everything again, not just changes.")
    ] = False,
    sweep: Annotated[
        bool, typer.Option("--sweep", help="Re-read every open invoice now, not on schedule.")
    ] = False,
) -> None:
    """Pull what changed from each connector's company into the store, once.

    The first sync pages through everything; later ones ask only for changes (QuickBooks' change
    feed, Xero's If-Modified-Since), with a periodic sweep of open invoices. Exit code 0 when
    every connector synced; otherwise the code of the first failure (see the README).
    """
    from arsync.commands import TerminalProgress, exit_code, render_reports
    from arsync.commands import sync as run_sync

    config = _configured(home)
    try:
        if sys.stderr.isatty():
            with TerminalProgress() as bars:
                reports = run_sync(config, names or [], full=full, sweep=sweep, progress=bars)
        else:
            reports = run_sync(config, names or [], full=full, sweep=sweep, progress=None)
    except ArsyncError as err:
        raise _fail(err) from err
    render_reports(reports)
    raise typer.Exit(exit_code(reports))


@app.command()
def status(
    names: Annotated[list[str] | None, typer.Argument(help="Connectors (default: all).")] = None,
    home: HomeOption = Path(),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each connector's health, last sync, record counts and receivables aging (from the store)."""
    from arsync.commands import status as run_status

    config = _configured(home)
    try:
        run_status(config, names or [], as_json=as_json)
    except ArsyncError as err:
        raise _fail(err) from err


ConnectorOption = Annotated[
    str | None,
    typer.Option("--connector", "-c", help="The connector, when the name is not unique."),
]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", "-r", help="Why, for the paper trail.")
]


def _collecting(home: Path, work: Callable[[Collecting], str]) -> None:
    from arsync.collecting import Collecting

    config = _configured(home)
    try:
        with Collecting(config) as collecting:
            message = work(collecting)
    except ArsyncError as err:
        raise _fail(err) from err
    typer.echo(message)


@app.command()
def plan(
    names: Annotated[
        list[str] | None, typer.Argument(help="Connectors (default: all enabled).")
    ] = None,
    home: HomeOption = Path(),
    days: Annotated[
        int, typer.Option("--days", min=0, max=400, help="Also forecast this many days, by day.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """What arsync will do today for each open invoice, and why; with --days, the forecast.

    Records first what the ledger and the calendar settled (a hold set in QuickBooks or Xero,
    a promise broken or kept); sends nothing.
    """
    import json as json_

    from arsync.collecting import Collecting, plan_json, render_plan

    config = _configured(home)
    try:
        with Collecting(config) as collecting:
            planned = collecting.planned(names or [], days)
    except ArsyncError as err:
        raise _fail(err) from err
    if as_json:
        typer.echo(json_.dumps(plan_json(planned), indent=2))
    else:
        render_plan(planned, days=days)


@app.command()
def why(
    ref: Annotated[str, typer.Argument(help="An invoice's number or a customer's name (or id).")],
    home: HomeOption = Path(),
    connector: ConnectorOption = None,
) -> None:
    """Where an invoice or a customer stands in the policy, its holds and its history."""
    from arsync.collecting import Collecting, render_why

    config = _configured(home)
    try:
        with Collecting(config) as collecting:
            found = collecting.why(ref, connector=connector)
    except ArsyncError as err:
        raise _fail(err) from err
    render_why(found)


@app.command()
def hold(
    ref: Annotated[str, typer.Argument(help="A customer (pause it) or an invoice (exclude it).")],
    home: HomeOption = Path(),
    until: Annotated[
        str | None, typer.Option(help="A customer's pause ends after this day (YYYY-MM-DD).")
    ] = None,
    reason: ReasonOption = None,
    connector: ConnectorOption = None,
) -> None:
    """Pause a customer (until a date or until resumed), or exclude an invoice from collection."""
    _collecting(home, lambda c: c.hold(ref, until=until, reason=reason, connector=connector))


@app.command()
def resume(
    ref: Annotated[
        str, typer.Argument(help="A paused customer, or an excluded or disputed invoice.")
    ],
    home: HomeOption = Path(),
    reason: ReasonOption = None,
    connector: ConnectorOption = None,
) -> None:
    """End a pause, an exclusion or a dispute: collection resumes at the stage now due."""
    _collecting(home, lambda c: c.resume(ref, reason=reason, connector=connector))


@app.command()
def dispute(
    ref: Annotated[str, typer.Argument(help="The invoice in dispute (its number).")],
    home: HomeOption = Path(),
    reason: ReasonOption = None,
    connector: ConnectorOption = None,
) -> None:
    """Record that the customer disputes an invoice: never chased until resumed."""
    _collecting(home, lambda c: c.dispute(ref, reason=reason, connector=connector))


@app.command()
def promise(
    ref: Annotated[str, typer.Argument(help="The invoice (its number).")],
    on: Annotated[str, typer.Argument(metavar="DATE", help="The day promised (YYYY-MM-DD).")],
    home: HomeOption = Path(),
    reason: ReasonOption = None,
    connector: ConnectorOption = None,
) -> None:
    """Record a promise to pay: no chase until the date plus the policy's grace days."""
    _collecting(home, lambda c: c.promise(ref, on, reason=reason, connector=connector))


@app.command()
def settle(
    ref: Annotated[str, typer.Argument(help="The invoice (its number).")],
    amount: Annotated[str, typer.Argument(help="The amount agreed in full settlement.")],
    home: HomeOption = Path(),
    by: Annotated[
        str | None, typer.Option(help="The day it is to be paid by (YYYY-MM-DD).")
    ] = None,
    reason: ReasonOption = None,
    connector: ConnectorOption = None,
) -> None:
    """Record a settlement: a lower amount, within the policy's limit, ends the chase once paid."""
    _collecting(home, lambda c: c.settle(ref, amount, by=by, reason=reason, connector=connector))


@app.command()
def instalments(
    ref: Annotated[str, typer.Argument(help="The customer (its name).")],
    parts: Annotated[
        list[str], typer.Argument(metavar="DATE:AMOUNT...", help="Each instalment, in order.")
    ],
    home: HomeOption = Path(),
    invoice: Annotated[
        list[str] | None,
        typer.Option("--invoice", help="An invoice the plan covers (default: all open ones)."),
    ] = None,
    missed_allowed: Annotated[
        int | None, typer.Option(min=0, help="Missed instalments before the plan ends.")
    ] = None,
    reason: ReasonOption = None,
    connector: ConnectorOption = None,
) -> None:
    """Agree a payment plan: only an overdue instalment is chased; too many missed ends it."""
    _collecting(
        home,
        lambda c: c.instalments(
            ref,
            parts,
            invoices=invoice or [],
            missed_allowed=missed_allowed,
            reason=reason,
            connector=connector,
        ),
    )


@app.command()
def customer(
    ref: Annotated[str, typer.Argument(help="The customer (its name).")],
    timezone: Annotated[
        str | None,
        typer.Option(
            help='The customer\'s own time zone (IANA, e.g. "America/Denver"); "" to clear.'
        ),
    ] = None,
    send_to: Annotated[
        str | None,
        typer.Option(
            "--send-to",
            help="QuickBooks: email the customer's reminders to this address instead of the "
            'invoice\'s own; "" to clear.',
        ),
    ] = None,
    home: HomeOption = Path(),
    connector: ConnectorOption = None,
) -> None:
    """Set a customer's own time zone (whose quiet hours then apply), or where reminders go."""
    _collecting(
        home,
        lambda c: c.customer_settings(ref, zone=timezone, send_to=send_to, connector=connector),
    )


@app.command()
def calls(
    names: Annotated[
        list[str] | None, typer.Argument(help="Connectors (default: every enabled one).")
    ] = None,
    home: HomeOption = Path(),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Today's calls: one per customer, with its phone, what it owes and how late, what has
    happened so far, and a short script in the stage's tone.

    A call is on the list from the moment `arsync run` opens its task until its outcome is
    recorded with `arsync called`; an unanswered call comes back on the next business day.
    """
    import json as json_

    from arsync.collecting import Collecting
    from arsync.writeback.calls import call_list, render, to_json

    config = _configured(home)
    try:
        with Collecting(config) as collecting:
            lists = call_list(collecting, names or [])
    except ArsyncError as err:
        raise _fail(err) from err
    if as_json:
        typer.echo(json_.dumps(to_json(lists), indent=2))
    else:
        render(lists)


class CallOutcome(StrEnum):
    """The choices of `arsync called --outcome` (arsync.writeback.calls.Outcome's values: typer
    reads them when the app is built, before any command's imports)."""

    REACHED = "reached"
    NO_ANSWER = "no-answer"
    PROMISED = "promised"
    DISPUTED = "disputed"
    PLAN = "plan"


@app.command()
def called(
    ref: Annotated[str, typer.Argument(metavar="CUSTOMER", help="The customer called (its name).")],
    outcome: Annotated[
        CallOutcome,
        typer.Option(
            "--outcome",
            case_sensitive=False,
            help="What came of the call: reached, no-answer (called again on the next business "
            "day), promised (with --on), disputed (with --reason), plan (with --instalments).",
        ),
    ],
    home: HomeOption = Path(),
    on: Annotated[
        str | None, typer.Option("--on", help="promised: the day promised (YYYY-MM-DD).")
    ] = None,
    amount: Annotated[
        str | None,
        typer.Option("--amount", help="promised: the amount promised (default: all overdue)."),
    ] = None,
    instalments: Annotated[
        str | None,
        typer.Option(
            "--instalments", help='plan: each instalment, e.g. "2026-12-15:100,2027-01-15:100".'
        ),
    ] = None,
    invoice: Annotated[
        list[str] | None,
        typer.Option(
            "--invoice",
            help="The invoice a promise, dispute or plan is about (default: a promise every "
            "overdue invoice, a dispute the oldest, a plan every open one).",
        ),
    ] = None,
    reason: ReasonOption = None,
    connector: ConnectorOption = None,
) -> None:
    """Record what came of a call: its outcome goes in the paper trail, a promise, dispute or
    payment plan becomes the matching hold, and a dated note goes on the invoices in the ledger.
    """
    from arsync.writeback.calls import Outcome, record_call

    _collecting(
        home,
        lambda c: record_call(
            c,
            ref,
            Outcome(outcome.value),
            on=on,
            amount=amount,
            reason=reason,
            connector=connector,
            invoices=invoice or [],
            instalments=instalments,
        ),
    )


@app.command()
def history(
    ref: Annotated[str, typer.Argument(help="An invoice's number or a customer's name (or id).")],
    home: HomeOption = Path(),
    connector: ConnectorOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The paper trail of an invoice or a customer, in time order: every action planned, sent,
    skipped or failed with its reason and the platform's evidence, holds and call outcomes."""
    import json as json_

    from arsync.collecting import Collecting
    from arsync.writeback.history import history as trail
    from arsync.writeback.history import render, to_json

    config = _configured(home)
    try:
        with Collecting(config) as collecting:
            found = trail(collecting, ref, connector=connector)
    except ArsyncError as err:
        raise _fail(err) from err
    if as_json:
        typer.echo(json_.dumps(to_json(found), indent=2))
    else:
        render(found)


@app.command()
def run(
    names: Annotated[
        list[str] | None, typer.Argument(help="Connectors (default: every enabled one).")
    ] = None,
    home: HomeOption = Path(),
    once: Annotated[
        bool, typer.Option("--once", help="One unit of work per connector, then exit.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; write nothing.")
    ] = False,
) -> None:
    """The service: sync, plan, enqueue and send what is due, for every connector, until stopped
    (SIGTERM; SIGHUP reloads the configuration). With --once: one unit of work and exit.

    Every action goes through the outbox exactly once: a reminder emailed by QuickBooks or Xero,
    a dated note on the invoice, a call task. With --dry-run nothing is synced or written.
    """
    from arsync.writeback.run import render_units, run_once

    if not once:
        if dry_run or names:
            typer.secho(
                "arsync run serves every enabled connector until stopped; --dry-run and "
                "connector names go with --once",
                err=True,
                fg=typer.colors.RED,
            )
            raise typer.Exit(2)
        from arsync.daemon import serve

        raise typer.Exit(serve(home, _configured(home)))
    config = _configured(home)
    try:
        reports = run_once(config, names or [], dry_run=dry_run)
    except ArsyncError as err:
        raise _fail(err) from err
    typer.echo(render_units(reports, dry_run=dry_run))
    raise typer.Exit(max((r.exit_code for r in reports), default=0))


@app.command()
def outbox(
    names: Annotated[list[str] | None, typer.Argument(help="Connectors (default: all).")] = None,
    home: HomeOption = Path(),
    everything: Annotated[
        bool, typer.Option("--all", help="Include actions done, skipped and dead.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The actions waiting: for their moment, for approval, for a retry or for a person."""
    import json as json_

    from arsync.writeback.manage import listing, render, to_json

    config = _configured(home)
    try:
        from arsync.collecting import Collecting

        with Collecting(config) as collecting:
            rows = listing(collecting.store, config, names or [], everything=everything)
    except ArsyncError as err:
        raise _fail(err) from err
    typer.echo(json_.dumps(to_json(rows), indent=2) if as_json else render(rows))


@app.command()
def approve(
    action: Annotated[
        str | None, typer.Argument(help="The action's id (its first characters will do).")
    ] = None,
    names: Annotated[
        list[str] | None, typer.Option("--connector", "-c", help="With --all: these only.")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Approve every action awaiting approval.")
    ] = False,
    home: HomeOption = Path(),
) -> None:
    """Let an action that waits for approval go out (or all of them, with --all)."""
    from arsync.writeback.manage import approve as do_approve

    if (action is None) == (not every):
        typer.secho("name one action, or give --all", err=True, fg=typer.colors.RED)
        raise typer.Exit(2)

    def work(collecting: Collecting) -> str:
        done = do_approve(collecting.store, collecting.config, action, names or [])
        return "\n".join(done) if done else "Nothing awaits approval."

    _collecting(home, work)


@app.command()
def reject(
    action: Annotated[str, typer.Argument(help="The action's id (its first characters will do).")],
    reason: ReasonOption = None,
    home: HomeOption = Path(),
) -> None:
    """Stop an action before it happens, saying why (recorded in the paper trail)."""
    from arsync.writeback.manage import reject as do_reject

    _collecting(home, lambda c: do_reject(c.store, action, reason or ""))


@app.command()
def resolve(
    action: Annotated[str, typer.Argument(help="The action's id (its first characters will do).")],
    sent: Annotated[bool, typer.Option("--sent", help="It did happen.")] = False,
    resend: Annotated[bool, typer.Option("--resend", help="It did not: send it again.")] = False,
    skip: Annotated[bool, typer.Option("--skip", help="It should not happen.")] = False,
    reason: ReasonOption = None,
    home: HomeOption = Path(),
) -> None:
    """Settle an action arsync could not: after a lost reply, only a person can tell."""
    from arsync.writeback.manage import resolve as do_resolve

    chosen = [n for n, on in (("sent", sent), ("resend", resend), ("skip", skip)) if on]
    if len(chosen) != 1:
        typer.secho("give exactly one of --sent, --resend, --skip", err=True, fg=typer.colors.RED)
        raise typer.Exit(2)
    _collecting(home, lambda c: do_resolve(c.store, action, chosen[0], reason))


@app.command()
def handover(
    customer: Annotated[str, typer.Argument(help="The customer: its name (or id).")],
    agency: Annotated[
        str | None,
        typer.Option(help='The agency (default: "the collection agency").'),
    ] = None,
    connector: ConnectorOption = None,
    reason: ReasonOption = None,
    home: HomeOption = Path(),
) -> None:
    """Hand a customer over to a collection agency: an evidence pack, no more chasing, a note
    on each open invoice for the ledger (written by the next `arsync run --once`)."""
    from arsync.writeback.handover import handover_command

    config = _configured(home)
    try:
        message = handover_command(config, customer, agency, connector, reason)
    except ArsyncError as err:
        raise _fail(err) from err
    typer.echo(message)


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


def _operations() -> None:
    """The operator's commands that live beside their logic (their heavy imports are lazy)."""
    from arsync import backup, doctor

    backup.register(app)
    doctor.register(app)


_operations()


def main() -> None:
    try:
        app()
    except ArsyncError as err:  # pragma: no cover - commands convert their own
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(err.exit_code)
