"""Unit constants. Profiles use the unit named in each key's suffix; the loader
multiplies by one of these once, and all code works in SI (bytes, s, FLOP/s, Hz, W).

Decimal prefixes throughout (1 GB = 1e9 bytes), except the explicitly binary
``_gib`` / ``_kib`` keys.
"""

BYTES_PER_MB = 1e6
BYTES_PER_GB = 1e9
BYTES_PER_GIB = float(2**30)
BYTES_PER_KIB = 1024.0
FLOPS_PER_TFLOPS = 1e12
SECONDS_PER_US = 1e-6
HZ_PER_MHZ = 1e6
JOULES_PER_PJ = 1e-12
