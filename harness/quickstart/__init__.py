"""``truthsteer quickstart``: the whole pipeline on the embedded model in one call."""
