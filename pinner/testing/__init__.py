"""Fakes of the IPFS backends, shipped so that tests here and in the registry (and users' own tests) share
one set: ``nodes`` (in-memory `IpfsNode` / `PinBackend` objects) and ``orchestrators`` (HTTP servers that
follow the IPFS Cluster and Pinning Service API specs, for the real clients to talk to). Each goes
through the same contract tests as the real clients. Nothing outside tests imports this package.
"""
