"""Options files: short forms, overrides, defaults and validation."""
