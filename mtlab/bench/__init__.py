"""Benchmarks behind ``mtlab bench``: plain functions that measure and return figures (see crypto.py)."""
