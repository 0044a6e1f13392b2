"""Experiments that reproduce the seeds' claims as commands (top-k sweeps, ...)."""
