"""`python -m services.media`: run the media service with the MTLAB_MEDIA_* configuration."""

from services.media.server import run

run()
