"""A torch-free mirror of what sd-scripts reads: dataset TOMLs, run arguments, its schema and file rules."""
