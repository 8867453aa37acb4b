"""Simulated Xero: identity (login/identity hosts), connections and the Accounting API.

Modules: `sim` (XeroSim, the pipeline hooks and dispatch), `oauth_routes` (consent page, token,
revocation, discovery), `api` (Accounting API handlers and connections helpers), `state`
(one organisation's books and business events), `render` (entities as Xero JSON), `serialise`
(MS-JSON dates, exact decimals, envelopes, error bodies), `where` (the filter language).

Decisions where Xero's documentation is silent, and known deviations:
- Without `page`, a list returns every match, without line items and without a `pagination`
  object; with `page`, `pageSize` defaults to 100 and is capped at XeroLimits.max_page_size
  (asking for more serves the cap rather than failing).
- Default order is the order the organisation created the records; `order` takes any
  filterable field, ASC or DESC, comma-separated.
- If-Modified-Since is read to the second and is inclusive (UpdatedDateUTC >= the header).
  Deliberately strict: the OpenAPI file declares it a `date-time`, so only ISO 8601 date-times
  are read (what xero-python sends, `datetime.isoformat()`; naive means UTC; "Z" or an offset;
  seconds and fraction optional). Anything else, RFC 1123 (`Mon, 23 Nov 2026 14:59:59 GMT`)
  included, is refused with a 400 ValidationException (ErrorNumber 10) naming the header, where
  Xero's own answer is undocumented; a client that sends a form Xero may ignore is caught here
  instead of silently re-reading everything. Only the list endpoints read it (the OpenAPI file
  declares it for them alone); a single-record GET ignores it.
- GET /Organisation needs accounting.settings(.read), as the OpenAPI file says (a grant without
  it gets 401 AuthorizationUnsuccessful; `Sandbox.connect` grants .read by default). Timezone is
  the Windows zone id Xero writes (`state.XERO_TIMEZONES` maps the books' IANA zone);
  Class is PREMIUM for books in several currencies (multi-currency needs a top plan), else
  STANDARD; IsDemoCompany false; Version, financial year end, SalesTaxBasis/Period, address and
  phone follow CountryCode (GB, US, NZ; others GLOBAL). The `organisation` event sets zone,
  timezone, class, is_demo_company and country_code, and serves unusual values verbatim (a zone
  id missing from the enum, DEMO). No APIKey, no TaxNumber, no lock dates.
- `where` is read as .NET Dynamic LINQ reads it (`=`/`==`, `!=`/`<>`, AND/&&, OR/||, NOT/!,
  keywords in any case). A filter nesting deeper than 64 levels or holding more than 500
  conditions is refused as a QueryParseException (ErrorNumber 16) — our limits, not Xero's.
- A request body Xero could not deserialise (not JSON, not UTF-8, or the wrong JSON types such as
  `"HistoryRecords": "x"`) gets ErrorNumber 14 PostDataInvalidException; a readable body that
  breaks a rule gets ErrorNumber 10 ValidationException. A number given as Details is read as
  its text, as Xero's deserialiser does.
- An emailed invoice goes to the contact's EmailAddress and to every ContactPersons entry with
  IncludeInEmails; either alone is enough, and with neither the email is refused ("The contact
  does not have a valid email address"). The `email_change` event sets the address and/or the
  persons.
- What an API email leaves behind is undocumented, so both are settings and the wording is the
  sandbox's own choice: XeroLimits.email_history (default True) writes one History record,
  Changes "Sent", Details "This invoice has been sent to <addresses>." (the addresses comma-
  separated), User "System Generated"; XeroLimits.email_marks_sent (default True) sets
  SentToContact, moving UpdatedDateUTC unless the invoice is partly paid (Xero's caveat).
- Emails a day per organisation (secondary figures, all settings): XeroLimits.
  emails_per_day_paying 1,000, emails_per_day_trial 20 (Class TRIAL), emails_per_day_demo 0
  (IsDemoCompany, or Class DEMO); `emails_per_day` puts one cap on every plan. The `organisation`
  event changes the class. Which day Xero counts is undocumented: the sandbox counts the
  organisation's own calendar day, in the time zone of its books (or the event's `zone`), which
  it always knows. Over the cap the email is refused with a 400 ValidationException whose message
  is the sandbox's wording, since Xero's is undocumented: "The daily limit of emails for this
  organisation has been reached". A refused email does not count.
- History Details are at most XeroLimits.history_details_max (250) characters counted in UTF-16
  code units, as .NET counts a string (the unit is undocumented): an emoji counts 2.
- Idempotency-Key on PUT and POST: 1 to 128 characters, else a 400. A repeat of a key inside
  XeroLimits.idempotency_window (6 minutes) answers with the first reply (status, headers and
  body as they were; the ledger records "replayed") and performs nothing; the same key with
  another request (method, path or body) is a 400. From the window's end the key is forgotten
  and the request is performed again; a window of 0 never replays. 5xx answers are not kept.
- 429s name the limit in X-Rate-Limit-Problem (minute, day, appminute, concurrent); Retry-After
  comes with every one except concurrent, for which Xero gives no wait.
- A failure inside the sandbox itself answers with Xero's 500 body (the traceback goes to the
  log), so a client sees what it would see from Xero. A client that hangs up before its body is
  read is a dropped request (ledger status None), not a failure: nothing is answered or logged.
- JSON only: a request without `Accept: application/json` gets 406, where Xero would send XML.
- Validation messages for email preconditions, the email cap, the 250-character note limit and
  idempotency-key reuse follow Xero's shape (ErrorNumber 10, ValidationException) with our own
  wording.
- 429 bodies are problem-details without the null "Type" Xero's gateway uses for 401/403.
- Connections' createdDateUtc carries a "Z" so it is an RFC 3339 date-time as the OpenAPI file
  declares (Xero itself omits the offset).
- PKCE apps may exchange a code without a secret, but refreshing always needs the secret.
- The online-invoice URL points at in.xero.com, which the sandbox does not serve.
- Contact groups: GET /ContactGroups lists the ACTIVE groups (`where` and `order` on Name,
  Status, ContactGroupID) with empty `Contacts`; GET /ContactGroups/{id} gives one with its
  members (404 for an unknown or DELETED group, as "only ACTIVE groups are returned on GETs");
  PUT /ContactGroups makes groups (all or nothing: a Name is required, unique among the active
  ones in any case, at most 255 characters (our bound), at most 100 groups, Xero's own
  message); POST /ContactGroups/{id} renames or deletes (Status DELETED); PUT
  /ContactGroups/{id}/Contacts adds members (an unknown ContactID is a validation error, one
  already in stays, the reply lists every contact sent); DELETE …/Contacts/{ContactID} takes
  one out (204 even when it was not in), DELETE …/Contacts takes all out. A contact's
  ContactGroups are filled in single reads and paged lists only (an unpaged list carries empty
  lists, as Xero's maintainers say). Whether a membership change (or deleting the group) moves
  a member's UpdatedDateUTC is unknown: XeroLimits.group_change_moves_contact (default False).
  The events `group_create`, `group_edit` and `group_members` do the same as a person in Xero.
- POST /Invoices/{id} changes the ExpectedPaymentDate only ("2026-12-20", "…T00:00:00" or
  /Date(ms)/; cleared with `"ExpectedPaymentDateString": ""`; a null is "not given"), on sales
  invoices that are still owed (DRAFT, SUBMITTED, AUTHORISED). Any other field is refused
  (ErrorNumber 10) unless sent with the value the invoice already has (or is a read-only flag
  such as HasAttachments, which xero-python sends). It is rendered as /Date(ms+0000)/ in every
  invoice form, summaryOnly too. Whether setting it moves UpdatedDateUTC is unknown:
  XeroLimits.expected_date_moves_invoice (default False). The `expected_date` event is the
  Awaiting Payment list's "Expected Date".
- Contacts' billing (POBOX) address carries City, Region and Country as free text: "United
  Kingdom", or by the contact's currency "Ireland" (Co. Dublin) and "United States" (NY); the
  `contact_address` event changes country and region (and moves UpdatedDateUTC).
"""
