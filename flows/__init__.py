"""The Bytewax dataflows of profilestream: wiring only; the rules live in profilestream.domain.

Installed as `profilestream.flows` (pyproject.toml `package-dir`); there is no top-level
`flows` package."""
