"""The auth and session service (asyncio, asyncpg, redis): phone login with simulated SMS codes, users,
auth keys stored for the gateways, and authorizations (signed-in devices) that can be listed and revoked.

``server.py`` wires the process, ``handlers.py`` has one function per RPC method, ``store.py`` all SQL,
``codes.py`` login codes and flood limits in Redis, ``changes.py`` the ``keys.watch`` stream, ``dc.py`` the
help.getConfig answer, ``migrations/`` the schema. README.md lists ports, metrics, knobs and failure modes.
"""
