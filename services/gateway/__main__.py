"""`python -m services.gateway`: run the MTProto gateway with the MTLAB_GATEWAY_* configuration."""

from services.gateway.server import run

run()
