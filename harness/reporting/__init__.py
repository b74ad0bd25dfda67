"""Reports from stored results: tables, cells, plots and figures; nothing here re-runs anything."""
