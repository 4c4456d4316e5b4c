"""The user's own application wired in: configuration before import, its sessionmaker
bound into each test's transaction. Nothing here imports pytest."""
