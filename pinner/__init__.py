"""Content addressing and moving bytes: UnixFS/dag-pb CIDs, CAR, the blockstore, IPFS clients, replication."""
