"""Compiled CPU loops (Numba) that the layers of snn_sweep.nn call where they apply."""
