"""Accounts: publishers, namespaces and their members, API tokens, and the Principal a token makes."""
