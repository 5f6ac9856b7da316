"""The auth and session service, on asyncio. Not built yet (issue #3)."""
