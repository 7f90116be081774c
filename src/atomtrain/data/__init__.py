"""Reading, describing and batching atomistic data."""
