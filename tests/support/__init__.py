"""What several tests share: the scenario language, the dataflow, CLI and run kits, sample data
loaders, and the helpers a test module used to import from another (no test imports a test)."""
