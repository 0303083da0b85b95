"""The read-first estimate: off at first, on soon after rows are found not newer, off again
once rows are new (DynamoDB's use of it: tests/e2e/test_dynamodb.py)."""

from __future__ import annotations

from ferry.stores.skip_estimate import SkipEstimate


def test_it_starts_by_writing_without_reading() -> None:
    assert not SkipEstimate().worth_reading_first


def test_a_run_of_skips_turns_it_on_within_a_dozen_rows() -> None:
    estimate = SkipEstimate()
    turned_on_at = None
    for count in range(1, 20):
        estimate.note(skipped=1)
        if estimate.worth_reading_first:
            turned_on_at = count
            break
    assert turned_on_at == 12  # 1 - 0.98 ** 12 = 0.215


def test_new_rows_turn_it_off_again() -> None:
    estimate = SkipEstimate()
    estimate.note(skipped=500)
    assert estimate.share > 0.99
    estimate.note(written=60)
    assert estimate.worth_reading_first  # 0.98 ** 60 = 0.30
    estimate.note(written=20)
    assert not estimate.worth_reading_first


def test_counts_at_once_equal_rows_one_by_one() -> None:
    together, apart = SkipEstimate(), SkipEstimate()
    together.note(skipped=30)
    together.note(written=7)
    for _ in range(30):
        apart.note(skipped=1)
    for _ in range(7):
        apart.note(written=1)
    assert abs(together.share - apart.share) < 1e-12


def test_a_steady_mix_settles_at_its_share() -> None:
    estimate = SkipEstimate()
    for _ in range(400):
        estimate.note(skipped=1)
        estimate.note(written=3)
    assert 0.2 < estimate.share < 0.3  # a quarter skipped, reading first stays on
