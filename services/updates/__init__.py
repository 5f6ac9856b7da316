"""The updates service: live fan-out and gap recovery. Not built yet (issue #5)."""
