"""Persistent state. Only this package opens a database."""
