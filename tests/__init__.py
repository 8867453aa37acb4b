"""arsync's tests."""
