"""Helpers shared by test folders (imported as tests.helpers.*; fixtures stay in each folder's conftest)."""
