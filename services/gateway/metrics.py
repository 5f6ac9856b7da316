"""The gateway's Prometheus metrics (module-level, fixed label sets, ``mtlab_gateway_<what>_<unit>``).

What an SRE student watches: connections by transport, handshakes by outcome, decryption failures by
reason, refusals by limit, RPC latency by method and by the service that answered, rpc_errors by service,
the auth-key cache, bytes in and out.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("mtlab_gateway_open_connections", "Open client connections", ["transport"])
CONNECTIONS_TOTAL = Counter("mtlab_gateway_connections_total", "Client connections accepted", ["transport"])
REFUSED = Counter("mtlab_gateway_refused_total", "Connections closed by a limit", ["reason"])
HANDSHAKES = Counter("mtlab_gateway_handshakes_total", "Auth-key handshakes by outcome", ["result"])
DECRYPT_FAILURES = Counter("mtlab_gateway_decrypt_failures_total", "Encrypted messages refused", ["reason"])
PROTOCOL_ERRORS = Counter("mtlab_gateway_protocol_errors_total", "Connections closed for a protocol error", ["code"])
BAD_MSGS = Counter("mtlab_gateway_bad_msg_total", "bad_msg_notification sent, by code", ["code"])
RPC_SECONDS = Histogram(
    "mtlab_gateway_rpc_seconds", "Time to answer an RPC", ["method", "service"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BYTES = Counter("mtlab_gateway_bytes_total", "Bytes on client connections", ["direction"])
SESSIONS = Gauge("mtlab_gateway_sessions", "MTProto sessions held in memory")
AUTH_KEYS = Gauge("mtlab_gateway_auth_keys", "Auth keys known to this gateway")
KEY_CACHE = Counter("mtlab_gateway_key_cache_total", "Auth-key record cache: hit, miss, invalidated, resync",
                    ["result"])
KEY_CACHE_SIZE = Gauge("mtlab_gateway_key_cache_size", "Auth-key records cached in this process")
RPC_ERRORS = Counter("mtlab_gateway_rpc_errors_total", "rpc_error answers, by service and error (digits as X)",
                     ["service", "error"])
CALLS_IN_FLIGHT = Gauge("mtlab_gateway_calls_in_flight", "RPCs forwarded to services and not answered yet")
PUSHES = Counter("mtlab_gateway_pushes_total", "Pushed updates encrypted into a session (one per session reached)")
PUSH_SESSIONS = Gauge("mtlab_gateway_push_sessions", "Signed-in sessions subscribed to pushes on this gateway")
PUSH_ATTACHED = Gauge("mtlab_gateway_push_attached", "1 while the push stream to the updates service is attached")
