"""The content map for new titles: fitted on warm rows only, it recovers a linear relation."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.kinds.new_items import content_to_rows, grown


def test_rows_that_are_linear_in_content_are_recovered_from_warm_rows_only() -> None:
    rng = np.random.default_rng(0)
    content = rng.normal(size=(130, 8))
    truth = rng.normal(size=(8, 5))
    table = content[:120] @ truth
    warm = np.ones(120, dtype=bool)
    warm[:20] = False
    table[:20] = 1e6  # rows of items without interactions: garbage the map must not read
    new = content_to_rows(content, table.astype(np.float32), warm)
    assert new.shape == (10, 5) and new.dtype == np.float32
    np.testing.assert_allclose(new, content[120:] @ truth, atol=0.05)
    assert np.array_equal(grown(table, content, warm)[:120], table)


def test_without_warm_rows_new_rows_are_zero_and_shapes_are_checked() -> None:
    content = np.ones((4, 3))
    assert (content_to_rows(content, np.ones((3, 2)), np.zeros(3, dtype=bool)) == 0).all()
    with pytest.raises(ValueError, match="do not fit"):
        content_to_rows(content, np.ones((3, 2)), np.ones(2, dtype=bool))
