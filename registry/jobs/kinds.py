"""Every kind of durable job the daemon runs, in one enum (the handlers are registered in ``registry.app.jobs``)."""

from __future__ import annotations

from enum import StrEnum


class JobKind(StrEnum):
    """A job kind is the ``jobs.kind`` column; adding one is an entry here, its handler, and its row in app/jobs."""

    FETCH = "fetch"  # bring a received pack's missing shard bytes in from IPFS nodes
    REPLICATE = "replicate"  # place a pack's units on nodes to its target
    RECONCILE = "reconcile"  # compare every node's pins with the index; queue what drifted
    AUDIT = "audit"  # re-hash sampled blocks of replicas
    GC = "gc"  # unpin what no live pack needs after the retention
    BLOB_GC = "blob-gc"  # delete uploaded blobs no pack references after the grace period
    VALIDATE = "validate"  # run the sandbox on a pack
    CURATE = "curate"  # apply the curation rule to one pack
    CURATE_SWEEP = "curate-sweep"  # re-check curated packs (degrade) and validated ones (promote)
    IPNS_PUBLISH = "ipns-publish"  # sign and push a channel's IPNS record
    IPNS_REPUBLISH = "ipns-republish"  # re-sign records before they expire
    PIN = "pin"  # place (or, once deleted, unpin) one Pinning Service API pin
    EVENTS_PRUNE = "events-prune"  # delete events past their retention
    WEBHOOK_DISPATCH = "webhook-dispatch"  # turn new events into webhook deliveries
    WEBHOOK_DELIVER = "webhook-deliver"  # one attempt of one webhook delivery

    def key(self, subject: str | None = None) -> str:
        """The dedupe key: one queued (and one running) job per kind and subject."""
        return self.value if subject is None else f"{self.value}:{subject}"
