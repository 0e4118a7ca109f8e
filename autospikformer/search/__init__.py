"""The search: architectures and spaces, the fitness, the trial bridge and the samplers (no torch)."""
