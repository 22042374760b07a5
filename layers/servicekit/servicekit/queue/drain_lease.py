"""The drain lease (AWS): one item that says a runner invocation is draining the queue's jobs.

Reserved concurrency 1 is what makes the runner one at a time; this item only tells chat
whether a drain is under way, so ``POST /v1/jobs`` kicks the runner (an asynchronous invoke)
only when none is. An invocation that starts draining takes the lease whatever it says
(reserved concurrency 1: whoever held it is no longer running), renews it while it drains
(condition: still its own), and deletes it when it stops (condition: still its own).

The handshake that loses no job: chat writes the job's ticket, *then* reads the lease; a drain
deletes the lease, *then* reads the queue (strongly consistent reads both). Either chat sees no
lease and kicks, or the drain sees the ticket and carries on.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

from servicekit.queue.model import Snapshot
from servicekit.state.dynamo import ConditionFailed, DynamoTable, to_item

DRAIN_ID = "queue#drain"
# The runner's route a kick invokes (asynchronously): chat's, or a drain handing over to the next.
DRAIN_PATH = "/v1/queue/drain"
# A drain renews its lease this often; a lease lasts DRAIN_LEASE_S (a dead drain is noticed by then).
DRAIN_RENEW_S = 2.0
DRAIN_LEASE_S = 10.0


def job_at_head(snapshot: Snapshot) -> bool:
    """Whether a drain has work: the head of the queue is a job (a ticket nobody waits on)."""
    return snapshot.head is not None and snapshot.head["holder"] is None


class DrainLease:
    def __init__(
        self, table: Any = None, *, connect: Callable[[], Any] | None = None, lease_s: float = DRAIN_LEASE_S
    ) -> None:
        self._db = DynamoTable(table, connect=connect)
        self.lease_s = lease_s

    async def live(self, *, now: float) -> bool:
        """Whether a drain holds the lease now."""
        item = await self._db.read(DRAIN_ID)
        return item is not None and float(item.get("lease_until", 0)) >= now

    async def take(self, holder: str, *, now: float) -> None:
        item = {"id": DRAIN_ID, "holder": holder, "lease_until": now + self.lease_s, "expires_at": int(now) + 86400}
        await self._db.call(lambda: self._db.table.put_item(Item=to_item(item)))

    async def renew(self, holder: str, *, now: float) -> bool:
        """Extend the lease; False when another invocation has taken it over."""
        try:
            await self._db.call(
                lambda: self._db.table.update_item(
                    Key={"id": DRAIN_ID},
                    UpdateExpression="SET lease_until = :lease",
                    ConditionExpression="holder = :me",
                    ExpressionAttributeValues=to_item({":lease": now + self.lease_s, ":me": holder}),
                )
            )
        except ConditionFailed:
            return False
        return True

    async def release(self, holder: str) -> None:
        with suppress(ConditionFailed):  # taken over meanwhile: that drain's lease stays
            await self._db.call(
                lambda: self._db.table.delete_item(
                    Key={"id": DRAIN_ID}, ConditionExpression="holder = :me", ExpressionAttributeValues={":me": holder}
                )
            )
