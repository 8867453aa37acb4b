"""QBO's wire shapes for faults: JSON and XML fault bodies, 401, throttle and server errors."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from starlette.responses import Response

from arsync.sandbox.qbo.model import dumps

JSON = "application/json;charset=UTF-8"


class QboFault(Exception):
    """A fault QBO answers with `{"Fault":{"Error":[…],"type":…},"time":…}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: str = "",
        kind: str = "ValidationFault",
        element: str = "",
    ) -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.kind = kind
        self.element = element

    def fault(self) -> dict[str, Any]:
        error: dict[str, Any] = {"Message": self.message, "Detail": self.detail, "code": self.code}
        if self.kind == "ValidationFault":
            error["element"] = self.element
        return {"Error": [error], "type": self.kind}


def headers() -> dict[str, str]:
    # Intuit stamps every reply with a transaction id (support asks for it).
    return {"intuit_tid": str(uuid.uuid4())}


def json_response(body: dict[str, Any], status: int = 200, *, stamp: str) -> Response:
    body = {**body, "time": stamp}
    return Response(dumps(body), status_code=status, media_type=JSON, headers=headers())


def fault_response(fault: QboFault, *, stamp: str) -> Response:
    return json_response({"Fault": fault.fault()}, fault.status, stamp=stamp)


# -- the common faults, worded as Intuit words them -----------------------------------------------
def not_found(entity: str, ident: str) -> QboFault:
    return QboFault(
        400,
        "610",
        "Object Not Found",
        "Object Not Found : Something you're trying to use has been made inactive. "
        "Check the fields with accounts, customers, items, vendors or employees.",
    )


def stale(entity: str) -> QboFault:
    return QboFault(
        400,
        "5010",
        "Stale Object Error",
        "Stale Object Error : You and someone else were working on this "
        f"{entity} at the same time. They finished before you did, so your work was not saved.",
    )


def unsupported(operation: str) -> QboFault:
    """What QBO answers a write it does not offer for an entity (e.g. creating a CustomerType):
    HTTP 400, a ValidationFault with code 500."""
    return QboFault(400, "500", "Unsupported Operation", f"Operation {operation} is not supported.")


def validation(code: str, message: str, detail: str, element: str = "") -> QboFault:
    return QboFault(400, code, message, detail, element=element)


def business(detail: str) -> QboFault:
    return QboFault(
        400,
        "6000",
        "A business validation error has occurred while processing your request",
        f"Business Validation Error: {detail}",
    )


def throttle() -> QboFault:
    return QboFault(
        429,
        "3001",
        "message=ThrottleExceeded; errorCode=003001; statusCode=429",
        "The request limit was reached.  Try again later",
        kind="SERVICE",
    )


def forbidden() -> QboFault:
    return QboFault(
        403,
        "3100",
        "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
        "",
        kind="SERVICE",
    )


def xml_fault_response(fault: QboFault, *, stamp: str) -> Response:
    """The XML body QBO sometimes sends with a 429 even when JSON was asked for."""
    body = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="{stamp}">\n'
        f'    <Fault type="{fault.kind}">\n'
        f'        <Error code="{fault.code}">\n'
        f"            <Message>{escape(fault.message)}</Message>\n"
        f"            <Detail>{escape(fault.detail)}</Detail>\n"
        "        </Error>\n"
        "    </Fault>\n"
        "</IntuitResponse>"
    )
    return Response(
        body,
        status_code=fault.status,
        media_type="application/xml;charset=UTF-8",
        headers=headers(),
    )


def unauthorized_response(now: datetime, detail: str | None = None) -> Response:
    """Intuit's 401: lower-case keys and a body unlike every other fault."""
    body: dict[str, Any] = {
        "warnings": None,
        "intuitObject": None,
        "fault": {
            "error": [
                {
                    "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                    "detail": detail,
                    "code": "3200",
                    "element": None,
                }
            ],
            "type": "AUTHENTICATION",
        },
        "report": None,
        "queryResponse": None,
        "batchItemResponse": [],
        "attachableResponse": [],
        "syncErrorResponse": None,
        "requestId": None,
        "time": int(now.timestamp() * 1000),
        "status": None,
        "cdcresponse": [],
    }
    return Response(
        dumps(body),
        status_code=401,
        media_type=JSON,
        headers={**headers(), "WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'},
    )


def server_error_response(status: int, *, stamp: str) -> Response:
    """A 500 from the service itself, or a gateway's page for 502/503/504."""
    if status == 500:
        fault = QboFault(
            500,
            "10000",
            "An application error has occurred while processing your request",
            "System Failure Error: An unexpected error occurred while accessing or saving "
            "your data. Please wait a few minutes and try again.",
            kind="SystemFault",
        )
        return fault_response(fault, stamp=stamp)
    reason = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
    title = f"{status} {reason.get(status, 'Error')}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
    return Response(page, status_code=status, media_type="text/html", headers=headers())
