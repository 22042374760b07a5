"""The fair queue in front of the one generation slot: tickets, their order, and where they are kept.

- :mod:`.model` — a ticket, the order rules (classes, promotion, weighted fair queuing) and ETAs,
  as pure functions both stores apply.
- :mod:`.store` — the :class:`~.store.QueueStore` protocol; :mod:`.caps` — the caps, checked alike.
- :mod:`.sqlite_store` — tickets in the state database in STATE_DIR.
- :mod:`.dynamo_store` — tickets in the DynamoDB table (AWS); :mod:`.drain_lease` — the item that
  says a runner invocation is draining jobs there.
"""
