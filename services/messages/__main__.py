"""`python -m services.messages`: run the message service with the MTLAB_MESSAGES_* configuration."""

from services.messages.server import run

run()
