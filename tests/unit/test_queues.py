from __future__ import annotations

import pytest

from jobs.queues import Band, band_for_priority, band_queue_names, home_queue_of, redis_queue_name


@pytest.mark.parametrize(
    ("priority", "band"),
    [
        (0, Band.BULK),
        (3, Band.BULK),
        (4, Band.NORMAL),
        (5, Band.NORMAL),
        (6, Band.NORMAL),
        (7, Band.URGENT),
        (10, Band.URGENT),
    ],
)
def test_priorities_map_onto_three_bands(priority: int, band: Band) -> None:
    assert band_for_priority(priority) is band


@pytest.mark.parametrize("priority", [-1, 11])
def test_priorities_outside_zero_to_ten_are_refused(priority: int) -> None:
    with pytest.raises(ValueError, match="outside 0-10"):
        band_for_priority(priority)


def test_the_normal_band_is_the_queue_itself_so_raw_dramatiq_sends_land_there() -> None:
    assert redis_queue_name("email", 5) == "email"
    assert band_queue_names("email") == ["email.urgent", "email", "email.bulk"]


@pytest.mark.parametrize(
    "name", ["email", "email.urgent", "email.bulk", "email.urgent.DQ", "email.XQ", "email.DQ"]
)
def test_every_redis_list_maps_back_to_its_queue(name: str) -> None:
    assert home_queue_of(name) == "email"
