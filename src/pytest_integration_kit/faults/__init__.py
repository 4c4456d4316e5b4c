"""Faults: one HTTP fault vocabulary for mock routes, and a TCP fault proxy for any service."""
