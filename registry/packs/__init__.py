"""Packs: the lifecycle (states and every transition), blobs, publish, fetch-by-CID, the shard verifier,
pointers and the read side (browse)."""
