"""The torch-free mirror of sd-scripts: what its arguments, configs and model families mean, read without it."""
