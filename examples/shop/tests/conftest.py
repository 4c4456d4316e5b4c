"""The shop needs no fixtures of its own: pytest.ini names the schema and the seed,
and the plugin's fixtures do the rest."""
