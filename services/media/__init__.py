"""The media and file service. Not built yet (issue #6)."""
