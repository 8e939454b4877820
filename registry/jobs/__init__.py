"""Durable background jobs kept in the index: enqueue with a dedupe key, claim with a lease, retry with backoff."""

from registry.jobs.protocol import ClaimedJob, JobQueue, LeaseLost, PermanentJobError, RetryJob

__all__ = ["ClaimedJob", "JobQueue", "LeaseLost", "PermanentJobError", "RetryJob"]
