"""Simulated QuickBooks Online: OAuth 2.0 / OpenID (Intuit's identity hosts) and the Accounting API.

Modules: `sim` (QboSim, the pipeline hooks, business events and the router), `oauth_routes`
(discovery, consent, token, revoke, JWKS, userinfo), `pages` (consent and error pages), `api`
(query, CDC, read, write, void, delete, send, batch, requestid replay), `ops` (changes to a
company as QBO makes them, and reading client bodies), `model` (compact records, rendering to
Intuit's JSON, exact money), `prefs` (Preferences and CompanyInfo), `query` (the query language),
`wire` (fault bodies: JSON, XML, 401, throttle, 5xx).

Decisions where Intuit's documentation is silent, and known deviations:
- Every minorversion (missing, old, unreadable or newer) is served as 75.
- Money is exact: request bodies are read with decimals (never binary floats), amounts are held
  in cents (ROUND_HALF_UP) and written as bare JSON numbers with two places (150.00). NaN,
  infinities and amounts beyond 999,999,999,999.99 are refused as 2010 ValidationFaults (our
  bound; Intuit documents none). An invoice whose lines total below zero is refused with 6000.
- A body Intuit could not deserialise (not JSON, not UTF-8, NaN/Infinity literals, or the wrong
  JSON type, e.g. `"BillEmail": "a@b"` or `"Note": {}`) gets code 2010 naming the property in
  `element`; numbers given for text properties are read as their text; "true"/"false" strings are
  read as booleans. Text over its limit (PrivateNote 4000, Attachable Note 2000, DocNumber 21)
  gets 2040 rather than being cut.
- An update is checked in full before anything changes: a refused update (stale SyncToken, bad
  date, duplicate name, total below what was applied) leaves the object and its SyncToken as
  they were. All business state changes under `sandbox.lock`.
- A failure inside the sandbox itself answers Intuit's 500 SystemFault (code 10000); the
  traceback goes to the log, never to the client. A client that hangs up before its body is
  read is a dropped request (ledger status None), not a failure: nothing is answered or logged.
- Query: keywords, entity and field names are case-insensitive; string comparisons ignore case;
  OR and NOT are refused where they stand (4000); MAXRESULTS defaults to 100 and above
  QboLimits.max_results (1000) is a 4001; STARTPOSITION below 1 is read as 1, a position longer
  than a Java long is a 4001; a page past the end is an empty `QueryResponse` ({}). Customer
  queries hide inactive customers unless the query names Active. Field lists (`SELECT Id,
  Balance`) are answered as sparse objects, where the docs say projections are unsupported.
  Unordered results come in creation order. A datetime without an offset is company-local time.
- Conditions on AttachableRef.EntityRef.* must hold for one and the same reference.
- Preferences (GET /preferences, `SELECT * FROM Preferences`) and CompanyInfo (GET
  /companyinfo/{id}, `SELECT * FROM CompanyInfo`) are one read-only object each; a query may
  filter on Id, SyncToken, MetaData.* (and CurrencyPrefs.HomeCurrency / MultiCurrencyEnabled,
  CompanyName, Country), COUNT(*) is 1. Writing them is refused (2010). Neither carries a time
  zone, as in QBO; CompanyAddr's CountrySubDivisionCode (CA for the US books) and Country are
  the only hints. MultiCurrencyEnabled is true when the books hold several currencies (the
  generated US books hold one); `Company.multi_currency` and `custom_txn_numbers` may be set.
- Creating an invoice for an inactive customer is a 610 ("…has been made inactive"), as QBO does.
- CustomerType is read (GET /customertype/{id}, inactive ones too) and queried (`SELECT * FROM
  CustomerType`, which hides inactive types unless the query names Active, as for customers;
  Id, Name, Active and MetaData.* filter) but never written through the API: a create, update
  or delete (batch items too) is QBO's 400 ValidationFault code 500 "Unsupported Operation",
  "Operation Create is not supported.". CDC does not serve it. Names are unique (any case) and
  at most 100 characters (our bound). The control plane's `customer_type` event makes one,
  `customer_type_edit` renames it or makes it (in)active (moving its own LastUpdatedTime only).
- Customers carry `Notes` (≤ 2000, 2040 beyond), `CustomerTypeRef {"value": id}` only when a type
  is assigned, and BillAddr `Country` (free text, "USA" in the generated books) and
  `CountrySubDivisionCode` ("CA"). The `customer_edit` event sets notes, customer_type (an active
  type's Id, or null), country and region as a person would in QuickBooks, moving the
  customer's SyncToken and LastUpdatedTime. Through the API, Notes, CustomerTypeRef (an active
  type, or the one the customer already has; else 2500 "Invalid Reference Id") and BillAddr
  are written by create and update; a full update without BillAddr keeps the address.
- CDC: changedSince is inclusive and may look back QboLimits.cdc_lookback_days (30); at most
  cdc_max_objects (1000) objects across all entities, the oldest changes first, so a client that
  receives exactly the cap knows to narrow its window. Deleted objects come back as
  `{"domain","status":"Deleted","Id","MetaData":{"LastUpdatedTime"}}`; an entity without changes
  is `{}` in the QueryResponse list; an entity named twice is answered once.
- Void (`?operation=void`) zeroes every amount and quantity, sets PrivateNote to "Voided",
  clears LinkedTxn and leaves the invoice's payments unapplied (credit memos get their credit
  back). Voiding twice is a 6000. Editing a voided invoice's lines is not prevented.
- requestid: a write repeated with the same id (per realm, QboLimits.requestid_window, default a
  day) gets the first 200 reply byte for byte and performs nothing; failed writes are not
  remembered.
- Batch: items run in order under one lock (Intuit promises no order); an item that is not an
  object gets its own Fault with an empty bId. Only Invoice, Customer and Attachable are written
  through the API; Payment and CreditMemo change through business events only. Only Invoice and
  Attachable can be deleted.
- /send: `sendTo` must look like an address (2050) and replaces BillEmail; no address at all is
  a 6000; QboLimits.emails_per_day (None: no cap) is a per-company, company-local daily cap.
- 429s carry no Retry-After (Intuit says wait 60 s) except the injected day-limit fault.
- Fault wording for stale objects, not-found and business errors follows Intuit's shape with
  our own detail text.
"""
