"""Memory probes: one record per device, from the best source this machine offers."""
