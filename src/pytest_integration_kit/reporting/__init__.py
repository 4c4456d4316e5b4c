"""What the kit tells the user: the header, progress, decisions, the end summary, doctor.

Plain code over the settings and the lifecycle's records; ``plugin.py`` feeds it what
pytest knows and writes what it returns. Nothing here imports pytest.
"""

from __future__ import annotations
