"""One module per finding: `config(profile, **params)` and `run(cfg) -> Results`."""
