"""Pixels: decoding sources, colour profiles, crop boxes, fitting a cell, resampling, painting a frame."""
