"""The bodies of the commands, one module a command: `profilestream.cli` only parses arguments
and calls `main(config, args) -> int` of the module (0 done, 1 the work failed; a bad usage or
configuration is 2, raised as `ConfigError` or returned).

`broker`, `topics` (`topics create`), `produce`, `consume`, `run`, `demo`, `profile`
(`profile get`), `serve_store`, `recording` (`record`, `replay`), `fit_model`, `report`
(`report campaigns`), `describe`, `bench`. Each imports what it needs when it runs, so the I/O
commands start fast and work without the dataflow's dependencies loaded.
"""
