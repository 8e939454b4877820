"""Clients for the places that keep pins: Kubo RPC nodes, IPFS Cluster, Pinning Service API."""
