"""The Pinning Service API's pins: requests, tenancy and quotas (service.py), and their replication (replicate.py)."""
