"""Contract tests: the official SDKs and the Xero OpenAPI file against the sandbox."""
