"""Adapters of the scores' Protocols (`profilestream.domain.scores`) to third-party libraries:
the KLL quantile sketch (`kll`, datasketches). The BG/NBD model is `profilestream.bgnbd` (numpy,
scipy); it satisfies `PurchaseModel` as it is. The shell (`config.ScoresConfig.settings`) injects
them; the domain never imports them."""

__all__: list[str] = []
