"""Bytes in one pass: compression, checksums and sidecars, the write pipeline (produce, compress, hash, atomic file), the inflating reader."""
