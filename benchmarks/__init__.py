"""Speed and accuracy benchmarks; each module prints a table (``python -m benchmarks.<name>``)."""
