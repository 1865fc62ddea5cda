"""Reports as Markdown artifacts: tables that a stray `|` or newline cannot break, hours with
traffic only, no repeated table, no lone `-` (Markdown would render it as a bullet)."""

from __future__ import annotations

from notify.report_view import markdown

BASE = {"as_of": "2026-11-30T12:00:00Z", "window_start": "2026-11-29T12:00:00Z", "severity": "P3"}


def test_cells_with_newlines_and_pipes_stay_in_their_row() -> None:
    page = "<html>\n<h1>404 | Not Found</h1>\n</html>"
    text = markdown("Health", {**BASE, "ses": {"errors": page}, "unknown": None})
    row = next(line for line in text.splitlines() if line.startswith("| ses.errors"))
    assert row == r"| ses.errors | <html> <h1>404 \| Not Found</h1> </html> |"
    assert "| unknown | none |" in text and "| - |" not in text


def test_sms_cost_shows_hours_with_traffic_and_no_twin_table() -> None:
    hours = [{"hour": f"2026-11-30T{h:02d}:00:00Z", "count": 0, "cost_usd": "0"} for h in range(25)]
    hours[20] = {"hour": "2026-11-30T20:00:00Z", "count": 12, "cost_usd": "0.0774"}
    top = [{"recipient": "technician:1", "count": 12, "cost_usd": "0.0774"}]
    data = {**BASE, "hourly": hours, "top_recipients": top, "top_recipients_by_cost": top}
    text = markdown("SMS cost", data)
    assert "## hourly: 1 of 25 hours with traffic" in text
    assert "| 2026-11-30T20:00:00Z | 12 | 0.0774 |" in text and text.count("T05:00") == 0
    assert "## top_recipients\n" in text and "top_recipients_by_cost" not in text
