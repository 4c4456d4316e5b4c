"""A tiny shop: orders in PostgreSQL, a price cache in Redis."""
