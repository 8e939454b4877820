"""The event outbox: what changed, written in the change's own transaction, read as a feed and a stream."""
