"""Queries and state changes, one module per resource; routes stay thin."""
