"""The frames a run has: subset plans, pools, collages, frame jobs per epoch, run settings (mode, seed)."""
