"""Foundations every layer uses: errors, value types, the option table, seeded randomness, progress, files."""
