"""End-to-end tests: the command line and real loopback HTTP."""
