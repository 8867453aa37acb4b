"""The HTML a person sees while connecting an app: Intuit-style consent and error pages."""

from __future__ import annotations

from html import escape

_STYLE = """
*{box-sizing:border-box}
body{margin:0;font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,
sans-serif;background:#f4f5f8;color:#393a3d}
header{background:#2ca01c;color:#fff;padding:14px 28px;font-weight:600;font-size:18px;
letter-spacing:.2px}
header small{font-weight:400;opacity:.85;margin-left:10px;font-size:13px}
main{max-width:520px;margin:40px auto;background:#fff;border-radius:8px;
box-shadow:0 2px 10px rgba(0,0,0,.08);padding:32px 36px}
h1{font-size:22px;margin:0 0 8px}
p{line-height:1.5;margin:8px 0}
.muted{color:#6b6c72;font-size:14px}
ul.scopes{padding-left:20px;margin:12px 0 20px}
ul.scopes li{margin:4px 0}
fieldset{border:1px solid #d4d7dc;border-radius:6px;padding:6px 14px 10px;margin:18px 0}
legend{font-size:13px;color:#6b6c72;padding:0 6px}
label.company{display:flex;align-items:center;gap:10px;padding:10px 4px;border-bottom:1px solid
#eceef1;cursor:pointer}
label.company:last-child{border-bottom:none}
label.company span small{display:block;color:#8d9096;font-size:12px}
.actions{display:flex;flex-direction:row-reverse;gap:12px;margin-top:24px}
button{font-size:15px;border-radius:4px;padding:10px 22px;cursor:pointer;border:1px solid #8d9096;
background:#fff;color:#393a3d}
button.primary{background:#2ca01c;border-color:#2ca01c;color:#fff;font-weight:600}
button.primary:hover{background:#108000}
.error{border-left:4px solid #d52b1e;padding-left:14px}
code{background:#f4f5f8;padding:1px 5px;border-radius:3px;font-size:13px;word-break:break-all}
footer{text-align:center;color:#8d9096;font-size:12px;margin:-20px 0 30px}
"""

_SCOPE_TEXT = {
    "com.intuit.quickbooks.accounting": "Read and change your QuickBooks accounting data",
    "com.intuit.quickbooks.payment": "Process payments through QuickBooks Payments",
    "openid": "Confirm who you are (OpenID)",
    "profile": "See your name",
    "email": "See your email address",
    "phone": "See your phone number",
    "address": "See your address",
    "intuit_name": "See your Intuit user name",
}


def _page(title: str, content: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        "<header>intuit quickbooks<small>sandbox</small></header>"
        f"<main>{content}</main>"
        "<footer>Simulated by the arsync sandbox. Nothing leaves this machine.</footer>"
        "</body></html>"
    )


def consent_page(
    *,
    app_name: str,
    scopes: list[str],
    companies: list[tuple[str, str]],
    hidden: dict[str, str],
    action: str,
) -> str:
    """Companies as radio buttons, then Connect or Cancel, posted back to the same path."""
    scope_items = "".join(f"<li>{escape(_SCOPE_TEXT.get(s, s))}</li>" for s in scopes)
    radios = "".join(
        f'<label class="company"><input type="radio" name="realm" value="{escape(realm)}"'
        f"{' checked' if i == 0 else ''}><span>{escape(name)}"
        f"<small>Company ID {escape(realm)}</small></span></label>"
        for i, (realm, name) in enumerate(companies)
    )
    fields = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in hidden.items()
    )
    content = (
        f"<h1>Connect {escape(app_name)} to QuickBooks</h1>"
        f'<p class="muted">{escape(app_name)} would like to:</p>'
        f'<ul class="scopes">{scope_items}</ul>'
        f'<form method="post" action="{escape(action)}">{fields}'
        f"<fieldset><legend>Choose a company</legend>{radios}</fieldset>"
        '<p class="muted">You can disconnect at any time from your QuickBooks apps page.</p>'
        '<div class="actions">'
        # Connect comes first in the form so that Enter connects; CSS shows it on the right.
        '<button type="submit" name="action" value="connect" class="primary">Connect</button>'
        '<button type="submit" name="action" value="cancel">Cancel</button>'
        "</div></form>"
    )
    return _page(f"Connect {app_name} to QuickBooks", content)


def error_page(title: str, message: str, detail: str = "") -> str:
    """Shown instead of a redirect when the request cannot be trusted (bad client or redirect)."""
    extra = f"<p><code>{escape(detail)}</code></p>" if detail else ""
    content = (
        f'<div class="error"><h1>{escape(title)}</h1><p>{escape(message)}</p>{extra}</div>'
        '<p class="muted">Check the app\'s client ID and redirect URI, then start again.</p>'
    )
    return _page(title, content)
