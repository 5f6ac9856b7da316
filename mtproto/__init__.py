"""mtproto: a sans-IO implementation of MTProto 2.0 (core.telegram.org/mtproto).

The package turns bytes into events and events into bytes. It never opens a socket, never sleeps, and never
reads the clock or the system's random source itself: callers pass time and random bytes in. That keeps every
step replayable in a test and lets the same code run under trio (the gateway) and asyncio (the services).

Subpackages:
- ``mtproto.tl``: the TL schema language: parser, code generator, runtime and the generated classes.
- ``mtproto.crypto``: AES-256-IGE, the MTProto 2.0 key derivations, RSA, Diffie-Hellman, AES-256-CTR.
- ``mtproto.transport``: the TCP framings (abridged, intermediate, padded, full) and obfuscation.
- ``mtproto.handshake``: creating an auth key, both sides, as pure steps.
- ``mtproto.session``: the encrypted session layer, both roles.
"""
