"""Scoring fitted spaces: retrieval metrics over seeded bags, the ranking of each configuration, choosing one."""
