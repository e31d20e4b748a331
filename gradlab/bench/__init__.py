"""`gradlab bench`: the engine's training step against NumPy's peak and PyTorch (engine), the probes'
cost (probes) and the sweep runner's speedup, overhead and consolidation (runner). Imported by the CLI only."""
