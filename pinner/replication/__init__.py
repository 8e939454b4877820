"""The replication logic, free of any database: where copies go, how bytes move, what drifted, what an audit proves.

`registry.replication.service` feeds it rows and records its answers; everything here is pure or works
through `pinner.ipfs.protocol` and `pinner.blockstore.protocol` collaborators, so fakes test it.
"""

from pinner.replication.model import NodeView, ReplicaView, Target
from pinner.replication.placement import UnitPlan, effective_target, plan_unit

__all__ = ["NodeView", "ReplicaView", "Target", "UnitPlan", "effective_target", "plan_unit"]
