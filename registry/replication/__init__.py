"""Replication: the replicate job, reconcile, audit and gc, the node registry and the one node-client
factory; the pure placement and transfer logic is ``pinner.replication``."""
