"""Reports from stored results: tables, cells, plots and figures; nothing here re-runs anything."""

FORMATS = ("markdown", "csv", "json")  # what bench report writes (harness.reporting.render)
