"""The webhooks service the composition root builds: the admin side (``endpoints``) and the delivery side
(``deliverer``, whose two job handlers the job table registers), plus the two operations that need both."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.accounts.principal import Principal
from registry.jobs.protocol import JobQueue
from registry.webhooks.config import WebhookConfig
from registry.webhooks.delivery import WebhookDeliverer
from registry.webhooks.endpoints import DeliveryView, WebhookEndpoints


class WebhookService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        kek: bytes,
        queue: JobQueue,
        config: WebhookConfig = WebhookConfig(),
    ) -> None:
        self._sessions = sessions
        self.config = config
        self.endpoints = WebhookEndpoints(sessions, kek, config)
        self.deliverer = WebhookDeliverer(sessions, kek, queue, config)

    async def test(self, principal: Principal, namespace: str, endpoint_id: int) -> DeliveryView:
        """Send a ``webhook.test`` ping to the endpoint now; the delivery as it ended."""
        ns, ep = await self.endpoints.endpoint_for_send(principal, namespace, endpoint_id)
        return await self.deliverer.send_test(ns, ep)

    async def redeliver(
        self, principal: Principal, namespace: str, endpoint_id: int, delivery_id: int
    ) -> DeliveryView:
        """A new delivery of the same message (same ``webhook-id`` and body), queued at once."""
        async with self._sessions() as s, s.begin():
            d = await self.endpoints.redelivery(s, principal, namespace, endpoint_id, delivery_id)
            await self.deliverer.enqueue_redelivery(s, d.id)
            return DeliveryView.of(d)

    async def close(self) -> None:
        await self.deliverer.close()
