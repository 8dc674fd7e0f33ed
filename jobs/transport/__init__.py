"""Everything that speaks Redis for the jobs system.

- ``client``: the Redis client from the settings (URL, TLS, Sentinel);
- ``broker`` and ``consumer``: Dramatiq's RedisBroker and its consumer,
  hardened (batched fetches, fetch listeners, no stranded messages), and the
  broker handle (``get_broker``) that services send through;
- ``send``: many messages and their wake-ups in one round trip;
- ``wakeups``, ``acks``, ``events``, ``ids``: queue wake-ups, batched acks,
  job events for streams, message ids;
- ``limits``, ``queues``, ``workers``, ``recovery``, ``leader_lock``: the
  Redis side of fairness, queue inspection and purge, the worker registry,
  the recovery loop and the scheduler's leader lock.

Nothing here imports services, selectors, middleware or edges.
"""
