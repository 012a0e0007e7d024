"""Calendars (.ics): one section per event (icalendar), recurrences expanded for the near future.

Recurrence is expanded with dateutil's rrule (already a dependency of icalendar) rather than
recurring_ical_events, which would pin an older dateutil than the one installed. The next
few occurrences within ``HORIZON`` are written into the event's text, so "when is the next
choir rehearsal?" finds a dated answer.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from dateutil.rrule import rrulestr

from store.parsers import Record, Section, Unreadable

if TYPE_CHECKING:  # icalendar itself loads only when a calendar is read
    from icalendar import Component, vRecur

HORIZON = dt.timedelta(days=120)
SHORT_HORIZON = dt.timedelta(days=2)
MAX_OCCURRENCES = 6
# Periods of recurrence rules dateutil may walk per calendar: a few seconds at most. A daily
# rule costs the 120 days of the horizon; one with a COUNT costs every period since its start.
MAX_WORK = 1_000_000
# Seconds in one period of each frequency; months and years at their shortest, so the cost of
# a walk is never underestimated.
_PERIOD = {
    "SECONDLY": 1,
    "MINUTELY": 60,
    "HOURLY": 3600,
    "DAILY": 86400,
    "WEEKLY": 7 * 86400,
    "MONTHLY": 28 * 86400,
    "YEARLY": 365 * 86400,
}


def parse_ics(content: bytes, now: dt.datetime | None = None) -> list[Record]:
    # Loaded with the first calendar (a tenth of a second), not by every process that
    # imports the registry: most never read one (parsing is mostly in worker processes).
    import icalendar

    if b"\x00" in content[:8192]:
        raise Unreadable("binary file, not a calendar")
    if b"BEGIN:VCALENDAR" not in content[:4096].upper():
        raise Unreadable("not a calendar (no BEGIN:VCALENDAR)")
    try:
        calendars = icalendar.Calendar.from_ical(content, multiple=True)
    except Exception as e:  # icalendar raises ValueError, KeyError, IndexError… on broken lines
        raise Unreadable(f"broken calendar ({_short(e)})") from None
    now = now or dt.datetime.now(dt.UTC)
    sections: list[Section] = []
    work = [MAX_WORK]
    for calendar in calendars:
        name = str(calendar.get("x-wr-calname") or "")
        for event in calendar.walk("VEVENT"):
            try:
                section = _event(event, name, now, work)
            except Exception:  # one broken event does not lose the others
                continue
            if section is not None:
                sections.append(section)
    if not sections:
        raise Unreadable("no readable events in the calendar")
    return [Record(sections, "calendar")]


def _event(
    event: Component, calendar_name: str, now: dt.datetime, work: list[int]
) -> Section | None:
    summary = _text(event.get("summary"))
    start = _decoded(event, "dtstart")
    end = _decoded(event, "dtend")
    location = _text(event.get("location"))
    description = _text(event.get("description"))
    if not (summary or description):
        return None
    meta: dict[str, Any] = {"kind": "event", "summary": summary or "(untitled event)"}
    lines = [f"Event: {meta['summary']}"]
    if start is not None:
        meta["start"] = start.isoformat()
        lines.append(f"Starts: {_show(start)}")
    if end is not None:
        meta["end"] = end.isoformat()
        lines.append(f"Ends: {_show(end)}")
    if location:
        meta["location"] = location
        lines.append(f"Where: {location}")
    rule = event.get("rrule")
    if rule is not None and start is not None:
        upcoming = _occurrences(rule, start, now, work)
        lines.append(f"Repeats: {rule.to_ical().decode()}")
        if upcoming:
            meta["next"] = [d.isoformat() for d in upcoming]
            lines.append("Next: " + "; ".join(_show(d) for d in upcoming))
    if calendar_name:
        meta["calendar"] = calendar_name
    if description:
        lines.append(description)
    return Section("\n".join(lines), meta)


def _occurrences(rule: vRecur, start: dt.date, now: dt.datetime, work: list[int]) -> list[dt.date]:
    """The next few occurrences of ``rule`` (icalendar's vRecur) within the horizon, or none
    when finding them would cost more than what is left of the calendar's ``work`` budget
    (a one-item list: rule periods dateutil may step through, shared by all events)."""
    all_day = not isinstance(start, dt.datetime)
    first = start if isinstance(start, dt.datetime) else dt.datetime.combine(start, dt.time())
    now = now.replace(tzinfo=None) if first.tzinfo is None else now.astimezone(first.tzinfo)
    freq = str((rule.get("FREQ") or [""])[0]).upper()
    interval = rule.get("INTERVAL") or [1]
    if freq not in _PERIOD or not str(interval[0]).isdigit() or int(interval[0]) < 1:
        return []
    period = _PERIOD[freq] * int(interval[0])
    if "COUNT" not in rule and freq not in ("MONTHLY", "YEARLY"):
        # dateutil walks every period from the start: a SECONDLY rule from 1970 is billions of
        # steps. Without a COUNT, starting whole periods later gives the same occurrences
        # (the phase, and the time of day the BY parts default to, are kept), so the walk
        # begins one period before now.
        behind = int((now - first).total_seconds() // period) - 1
        if behind > 0:
            first += dt.timedelta(seconds=behind * period)
    # A rule that repeats within the day is looked at for its next two days only.
    end = now + (HORIZON if _PERIOD[freq] >= _PERIOD["DAILY"] else SHORT_HORIZON)
    # What is left to walk (a COUNT rule from long ago, a yearly one): charged before walking.
    cost = max(1, int((end - first).total_seconds() // period) + 1)
    if cost > work[0]:
        return []
    work[0] -= cost
    found: list[dt.date] = []
    for steps, when in enumerate(rrulestr(rule.to_ical().decode(), dtstart=first, cache=False)):
        if steps > cost or when > end or len(found) >= MAX_OCCURRENCES:
            break
        if when >= now:
            found.append(when.date() if all_day else when)
    return found


def _decoded(event: Component, name: str) -> dt.date | None:
    try:
        value = event.decoded(name)
    except Exception:
        return None
    return value if isinstance(value, (dt.date, dt.datetime)) else None


def _text(value: object) -> str:
    if value is None:
        return ""
    return " ".join(str(value).split()) if "\n" not in str(value) else str(value).strip()


def _show(when: dt.date) -> str:
    if isinstance(when, dt.datetime):
        return when.strftime("%a %d %b %Y %H:%M") + (f" {when.tzname()}" if when.tzinfo else "")
    return when.strftime("%a %d %b %Y (all day)")


def _short(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) < 120 else text[:119] + "…"
