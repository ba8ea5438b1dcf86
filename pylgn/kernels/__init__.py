"""Kernel sets with the same names and argument order: ``cpu`` (numba) and ``cuda`` (numba.cuda)."""
