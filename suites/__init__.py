"""Built-in suite files (TOML data, shipped as package data; nothing here is executed)."""
