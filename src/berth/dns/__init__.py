"""Embedded DNS for user-defined networks: container names answered by berthd, the rest forwarded."""
