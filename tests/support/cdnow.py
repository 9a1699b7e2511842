"""The CDNOW 1/10 sample (tests/data/README.md) as purchase clicks, for the BG/NBD check."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from profilestream.domain.events import Click

DATA = Path(__file__).parent.parent / "data" / "CDNOW_sample.txt"
START = date(1997, 1, 1)
CALIBRATION_END = date(1997, 9, 30)  # 39 weeks of data from 1997-01-01 (days 0..272): T = 38.86 weeks for a 1 Jan buyer


def midnight_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def transactions(until: date = CALIBRATION_END) -> dict[tuple[str, date], float]:
    """{(customer, day): dollars} up to `until`: purchases on the same day count as one (as in the
    paper), their values summed."""
    days: dict[tuple[str, date], float] = {}
    for line in DATA.read_text().splitlines():
        _master, customer, ymd, _cds, dollars = line.split()
        day = date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
        if day <= until:
            days[(customer, day)] = days.get((customer, day), 0.0) + float(dollars)
    return days


def purchase_clicks(until: date = CALIBRATION_END) -> list[Click]:
    """One `purchase` click per customer-day, at midnight UTC, from device `cdnow-<customer>`."""
    clicks = [
        Click(
            event_id=f"cdnow-{customer}-{day:%Y%m%d}",
            ts=midnight_ms(day),
            device_id=f"cdnow-{customer}",
            type="purchase",
            order_id=f"{customer}-{day:%Y%m%d}",
            revenue=round(dollars, 2),
        )
        for (customer, day), dollars in transactions(until).items()
    ]
    return sorted(clicks, key=lambda c: (c.ts, c.event_id))
