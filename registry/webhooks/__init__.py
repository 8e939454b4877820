"""Webhooks (issue #15 item 2): namespace admins register endpoints; every matching event of the outbox is
delivered to them by the job queue, signed per the Standard Webhooks spec, with retries and a delivery log.

- ``signing``: secrets (``whsec_`` + base64 of 32 random bytes) and the ``webhook-*`` headers;
- ``config``: the component config, the event types an endpoint may ask for, the URL allow-list;
- ``endpoints``: registering, listing, rotating, enabling and removing endpoints; the delivery log;
- ``delivery``: the dispatcher (events after each endpoint's cursor become deliveries) and the deliverer
  (one POST per attempt, no redirects followed, backoff, dead after N attempts, auto-disable).
"""
