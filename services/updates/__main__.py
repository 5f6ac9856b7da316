"""`python -m services.updates`: run the updates service with the MTLAB_UPDATES_* configuration."""

from services.updates.server import run

run()
