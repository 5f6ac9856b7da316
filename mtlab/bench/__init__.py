"""Benchmarks behind ``mtlab bench``: plain functions that measure and return figures; ``report.py`` prints them.

Benchmarks (each figure next to a baseline measured in the same run; nothing asserts a speed):

- ``crypto.py``, ``mtlab bench crypto``: AES-256-IGE, message encryption and the server's handshake cost, next to
  raw cryptg and raw GMP.
- ``messages.py``, ``mtlab bench messages``: private messages persisted per second (both copies, update log,
  dialogs, outbox) through the message service's handlers in-process, through ``python -m services.messages`` over
  internal RPC, and end to end through the gateway with SDK clients; next to the ceiling, ``pgbench`` doing the same
  raw writes on the same Postgres (the issue's target: the in-process service at 0.3 of it or more). Also send
  latency p50/p99, the database's count of what each phase wrote, and the CPU each process used per message.
  Databases are the run's own and dropped at the end; Postgres and Redis are ``MTLAB_POSTGRES_DSN`` /
  ``MTLAB_REDIS_URL`` when set, else started in a temporary directory.
- ``fanout.py``, ``mtlab bench fanout``: live push through the whole stack (gateway, auth, messages and updates
  services as processes): send-to-receive latency p50/p99 between two online users' SDK clients at idle and under a
  load like the gateway phase's, and a channel post to 10,000 online subscriber sessions (lightweight: keys and
  memberships written straight into the run's databases, many sessions per connection, mtproto's sans-IO client
  session): time until the last session has it, the median, and the gateway's and updates service's CPU.
"""
