"""Retention: the pure plan (keep / remove / why) and rotation, which carries a plan out."""
