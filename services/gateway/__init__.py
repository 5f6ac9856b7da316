"""The MTProto gateway (DC entry), on trio: TCP for every transport, auth keys, sessions, routing.

Start it with ``python -m services.gateway``; see README.md for its roles, ports, metrics and knobs.
"""
