"""The shop's products: a catalog of categories and prices with a long tail of popularity, and
the draw of a product (from one category, or from all)."""

from __future__ import annotations

import bisect
import itertools
import math
import random

from profilestream.devtools.sample.knobs import CATEGORIES


class Catalog:
    """`products[i]` is `(product id, category name, price)`; `product(cat)` draws an index."""

    def __init__(self, rng: random.Random, n: int) -> None:
        self.rng = rng
        self.products: list[tuple[str, str, float]] = []
        self.cat_products: list[list[int]] = [[] for _ in CATEGORIES]
        weights = []
        for i in range(n):
            c = rng.randrange(len(CATEGORIES))
            name, lo, hi = CATEGORIES[c]
            price = round(math.exp(rng.uniform(math.log(lo), math.log(hi)))) - 0.01
            self.products.append((f"p-{i + 1:05d}", name, max(price, 0.99)))
            self.cat_products[c].append(i)
            weights.append(1.0 / (i + 8) ** 0.9)  # a long tail of popularity
        self.cum = list(itertools.accumulate(weights))
        self.cat_cum = [list(itertools.accumulate(weights[i] for i in ids)) for ids in self.cat_products]
        self.cat_index = {name: c for c, (name, _, _) in enumerate(CATEGORIES)}

    def product(self, cat: int | None) -> int:
        """A product index, by popularity: of category `cat`, or of any when None (or it is empty)."""
        r = self.rng.random
        if cat is None:
            return bisect.bisect_right(self.cum, r() * self.cum[-1])
        cum = self.cat_cum[cat]
        if not cum:
            return bisect.bisect_right(self.cum, r() * self.cum[-1])
        return self.cat_products[cat][bisect.bisect_right(cum, r() * cum[-1])]


__all__ = ["Catalog"]
