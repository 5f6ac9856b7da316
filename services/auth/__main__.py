"""`python -m services.auth`: run the auth service with the MTLAB_AUTH_* configuration."""

from services.auth.server import run

run()
