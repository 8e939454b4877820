"""The transformer core, the safe pack loader, the smoke-test suite and its sandbox."""
