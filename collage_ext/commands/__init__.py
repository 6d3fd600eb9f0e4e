"""The command-line tools: check, preview, export, inspect, and the demo dataset."""
