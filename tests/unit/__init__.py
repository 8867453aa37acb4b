"""Unit tests: pure logic, no I/O, no mocks."""
