"""NumPy golden models: number formats, block behaviour and training algorithms.

Bit-exact references for the RTL in :mod:`hw`. Nothing here imports :mod:`hw` or :mod:`verif`.
"""
