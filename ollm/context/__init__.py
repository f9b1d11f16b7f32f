"""One actor per component; each module keeps its policy (no I/O) above its actor."""
