"""bench plugin old-api: see models.py and datasets.py; pyproject.toml registers both."""
