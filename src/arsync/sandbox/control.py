"""The control plane at /_sandbox/: clock, business events, fault plan, ledger, token faults."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arsync.sandbox.faults import FaultRule

if TYPE_CHECKING:
    from arsync.sandbox.core import Sandbox


#: the furthest one call may move the clock
MAX_ADVANCE = 100 * 366 * 86400.0


class ControlError(ValueError):
    pass


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as err:
        raise ControlError(f"the body is not JSON: {err}") from err


def _int(raw: object, name: str) -> int:
    try:
        return int(str(raw))
    except ValueError:
        raise ControlError(f"{name}: a whole number, got {raw!r}") from None


def _dict(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    return body


def control_app(sandbox: Sandbox) -> Starlette:
    def overview(request: Request) -> Response:
        from arsync.sandbox.core import DEMO_CLIENTS
        from arsync.sandbox.server import base_urls

        root = str(request.base_url).rstrip("/").removesuffix("/_sandbox")
        return JSONResponse(
            {
                "clock": {"now": sandbox.clock.now().isoformat(), "frozen": sandbox.clock.frozen},
                "tenants": [
                    {
                        "platform": t.platform,
                        "tenant_id": t.tenant_id,
                        "name": t.name,
                        "base_currency": t.base_currency,
                    }
                    for t in sandbox.tenants()
                ],
                "clients": {
                    p: {"client_id": c.client_id, "client_secret": c.client_secret}
                    for p, c in DEMO_CLIENTS.items()
                },
                "base_urls": base_urls(root),
            }
        )

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            body = _dict(await _json(request))
            unknown = set(body) - {"set", "advance", "freeze"}
            if unknown:
                raise ControlError(f"unknown clock keys: {', '.join(sorted(unknown))}")
            if "freeze" in body:
                if body["freeze"]:
                    sandbox.clock.freeze()
                else:
                    sandbox.clock.unfreeze()
            if "set" in body:
                try:
                    moment = datetime.fromisoformat(str(body["set"]))
                except ValueError as err:
                    raise ControlError(f"set: not an ISO 8601 time: {body['set']!r}") from err
                if moment.tzinfo is None:
                    raise ControlError("set: the time needs a UTC offset")
                sandbox.clock.set(moment)
            if "advance" in body:
                try:
                    seconds = float(body["advance"])
                except (TypeError, ValueError) as err:
                    raise ControlError("advance: a number of seconds") from err
                if not 0 <= seconds <= MAX_ADVANCE:
                    raise ControlError(f"advance: from 0 to {MAX_ADVANCE:.0f} seconds (100 years)")
                sandbox.clock.advance(timedelta(seconds=seconds))
        return JSONResponse(
            {"now": sandbox.clock.now().isoformat(), "frozen": sandbox.clock.frozen}
        )

    async def events(request: Request) -> Response:
        body = _dict(await _json(request))
        platform = body.pop("platform", None)
        tenant = body.pop("tenant", None)
        if not platform or not tenant:
            raise ControlError("an event needs platform and tenant")
        return JSONResponse(sandbox.event(str(platform), str(tenant), body))

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            body = await _json(request)
            rules = body if isinstance(body, list) else [body]
            if "seed" in request.query_params:
                sandbox.faults.reseed(_int(request.query_params["seed"], "seed"))
            added = [sandbox.faults.add(FaultRule.from_json(_dict(r))) for r in rules]
            return JSONResponse([r.to_json() for r in added], status_code=201)
        if request.method == "DELETE":
            sandbox.faults.clear()
            return Response(status_code=204)
        return JSONResponse([r.to_json() for r in sandbox.faults.rules])

    def fault_one(request: Request) -> Response:
        if sandbox.faults.remove(int(request.path_params["rule_id"])):
            return Response(status_code=204)
        return _error("no such fault rule", 404)

    def ledger(request: Request) -> Response:
        q = request.query_params
        filters: dict[str, Any] = {
            k: q[k] for k in ("platform", "kind", "tenant", "endpoint", "idempotency_key") if k in q
        }
        if "status" in q:
            filters["status"] = _int(q["status"], "status")
        if "since" in q:
            filters["since_seq"] = _int(q["since"], "since")
        entries = sandbox.ledger.entries(**filters)
        return JSONResponse({"count": len(entries), "entries": [e.to_json() for e in entries]})

    def ledger_counts(request: Request) -> Response:
        return JSONResponse(sandbox.ledger.request_counts(request.query_params.get("platform")))

    async def tokens(request: Request) -> Response:
        body = _dict(await _json(request))
        platform, tenant = body.get("platform"), body.get("tenant")
        if not platform:
            raise ControlError("platform is required")
        action = request.path_params["action"]
        if action == "expire":
            n = sandbox.expire_access_tokens(str(platform), tenant)
        elif action == "revoke":
            n = sandbox.revoke_grants(str(platform), tenant)
        else:
            return _error("unknown token action; use expire or revoke", 404)
        return JSONResponse({"affected": n})

    def guard(handler: Any) -> Any:
        async def wrapped(request: Request) -> Response:
            try:
                result = handler(request)
                if hasattr(result, "__await__"):
                    result = await result
                return result  # type: ignore[no-any-return]
            except ClientDisconnect:
                # The caller left before its body arrived: nobody reads this answer (the
                # server discards it), and there is no error to report.
                return Response(status_code=400)
            except KeyError as err:  # a missing key: its name, without repr quotes
                return _error(f"missing {err.args[0]}" if err.args else "missing key")
            except (ControlError, ValueError, TypeError, OverflowError) as err:
                return _error(str(err))

        return wrapped

    return Starlette(
        routes=[
            Route("/", guard(overview)),
            Route("/clock", guard(clock), methods=["GET", "POST"]),
            Route("/events", guard(events), methods=["POST"]),
            Route("/faults", guard(faults), methods=["GET", "POST", "DELETE"]),
            Route("/faults/{rule_id:int}", guard(fault_one), methods=["DELETE"]),
            Route("/ledger", guard(ledger)),
            Route("/ledger/counts", guard(ledger_counts)),
            Route("/tokens/{action}", guard(tokens), methods=["POST"]),
        ]
    )
