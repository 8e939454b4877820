"""Trust primitives: Ed25519 keys, manifest signatures, DSSE statements, IPNS records, trust policy.

Pure functions and small value types with no database; the registry's store and API call them.
"""
