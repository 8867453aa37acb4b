"""A validating proxy for tests: Accounting API requests must conform to Xero's OpenAPI file.

`OpenApiGate` wraps the sandbox's ASGI app (`SandboxServer(sandbox, wrap=...)`). Every request
below /xero/api/api.xro/2.0/ is checked with openapi-core against xero_accounting.yaml, as if it
had been sent to api.xero.com: one that does not conform is answered 400 with the validation
errors and never reaches the sandbox; every check, passed or refused, is recorded. Other paths
(identity, connections, the control plane) pass through unchecked.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC = Path(__file__).parent / "openapi" / "xero_accounting.yaml"
#: where the sandbox serves api.xero.com, and the part of it the gate checks (lower case: Xero's
#: paths are case-insensitive, the spec's are not, so a lower-cased path is checked and refused)
API_PREFIX = "/xero/api"
GATED = "/xero/api/api.xro/2.0/"
XERO_HOST = "https://api.xero.com"


def load_accounting_spec(path: Path = SPEC) -> OpenAPI:
    """Xero's Accounting API description, ready to validate requests.

    The `security` requirements are left out: openapi-core cannot check OAuth2 (it only warns
    "Unsupported scheme type" on every request), and the sandbox checks tokens and scopes itself.
    """
    with path.open() as handle:
        doc = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not an OpenAPI document")
    doc = copy.deepcopy(doc)
    _defaults_a_request_can_hold(doc)
    doc.pop("security", None)
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
    # The file itself is Xero's: validating the 25,000-line spec again adds nothing.
    return OpenAPI.from_dict(doc, config=Config(spec_validator_cls=None))


def _defaults_a_request_can_hold(node: object) -> None:
    """Make the file's defaults ones a request body can carry, so that none is refused for a
    value its client never sent.

    openapi-core fills a missing property in with its default and then validates the result.
    The file writes some boolean defaults as text (Contact.HasAttachments: `default: "false"`),
    which then fails as "not of type boolean", and gives read-only properties defaults (the
    Invoice's), which then fail as "tried to write read-only property": every body holding a
    Contact (PUT /ContactGroups/{id}/Contacts) or an Invoice (POST /Invoices/{id}) would be
    refused. Text booleans become booleans; a read-only property loses its default.
    """
    if isinstance(node, dict):
        if node.get("type") == "boolean" and node.get("default") in ("false", "true"):
            node["default"] = node["default"] == "true"
        if node.get("readOnly") is True:
            node.pop("default", None)
        for value in node.values():
            _defaults_a_request_can_hold(value)
    elif isinstance(node, list):
        for value in node:
            _defaults_a_request_can_hold(value)


@dataclass
class _Request:
    """One ASGI request as openapi-core reads it, moved back onto Xero's own host."""

    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters


@dataclass(frozen=True)
class Checked:
    """One gated request: what was sent and what the spec found wrong with it (if anything)."""

    method: str
    path: str  # below api.xero.com, e.g. /api.xro/2.0/Invoices
    query: str
    headers: dict[str, str]  # names in lower case
    errors: tuple[str, ...]

    @property
    def refused(self) -> bool:
        return bool(self.errors)


def _describe(error: BaseException) -> str:
    """An openapi-core error with the schema failures behind it, on one line."""
    parts = [str(error)]
    cause = error.__cause__
    for failure in getattr(cause, "schema_errors", None) or ():
        parts.append(str(getattr(failure, "message", failure)))
    return " | ".join(" ".join(p.split()) for p in parts)


class OpenApiGate:
    """ASGI middleware: answer 400 to Accounting API requests the OpenAPI file does not allow."""

    def __init__(self, app: ASGIApp, spec: OpenAPI) -> None:
        self.app = app
        self.spec = spec
        self.checked: list[Checked] = []

    @property
    def refused(self) -> list[Checked]:
        return [c for c in self.checked if c.refused]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.lower().startswith(GATED):
            await self.app(scope, receive, send)
            return
        body, replay = await _buffer(receive)
        if body is None:  # the client left mid-body: nothing to judge, the sandbox drops it
            await self.app(scope, replay, send)
            return
        checked = self.check(scope, body)
        self.checked.append(checked)
        if not checked.refused:
            await self.app(scope, replay, send)
            return
        payload = json.dumps(
            {
                "Title": "The request does not conform to xero_accounting.yaml",
                "Status": 400,
                "Errors": list(checked.errors),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-openapi-gate", b"refused"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def check(self, scope: Scope, body: bytes) -> Checked:
        raw_headers = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])
        ]
        query = scope.get("query_string", b"").decode("latin-1")
        path = scope["path"][len(API_PREFIX) :]
        headers = Headers(raw_headers)
        request = _Request(
            host_url=XERO_HOST,
            path=path,
            method=scope["method"].lower(),
            body=body or None,
            content_type=headers.get("content-type", "application/json"),
            parameters=RequestParameters(
                query=ImmutableMultiDict(parse_qsl(query, keep_blank_values=True)),
                header=headers,
            ),
        )
        try:
            errors = [_describe(e) for e in self.spec.unmarshal_request(request).errors]
        except Exception as err:  # openapi-core raises for some requests rather than listing
            errors = [_describe(err)]
        return Checked(
            method=scope["method"],
            path=path,
            query=query,
            headers={k.lower(): v for k, v in raw_headers},
            errors=tuple(errors),
        )


async def _buffer(receive: Receive) -> tuple[bytes | None, Receive]:
    """Read the whole request body (None if the client left first), and a `receive` that hands
    the same messages to the app once more."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    gone = messages[-1]["type"] != "http.request"
    body = None if gone else b"".join(m.get("body", b"") for m in messages)

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return body, replay


__all__ = ["Checked", "OpenApiGate", "load_accounting_spec"]
