"""The Temporal engine's shared rate budget as logic, on a clock of the test's own:
the budget workflow's ``pace`` steps (reserve, go, done) and a worker's pacer. That
it holds against a throttled sandbox is tested in test_temporal.py (section 6)."""

from __future__ import annotations

from typing import Any

import pytest

from connector.engines.temporal.budget import LEAD, FleetPacer
from connector.engines.temporal.workflows import WilloBudget
from connector.state.budget import MAX_RESLOTS, SLACK

T0 = 1_800_000_000.0  # a time of day far from midnight (UTC): no quota renews in these tests
LIMITS = [4, 0, 0]  # 4 requests a second, like the sandbox's throttle in test_temporal.py


def near(when: float) -> Any:
    return pytest.approx(when, abs=1e-3)  # (a relative tolerance would be minutes here)


def pace(budget: WilloBudget, now: float, **ask: Any) -> dict[str, Any]:
    """One ``pace`` update, asked and handled at ``now`` (no lead: plans are at now)."""
    return budget.pace({"limits": LIMITS, "now": now, "lead": 0.0, **ask}, now)


def go(budget: WilloBudget, now: float, slot: int, force: bool = False) -> dict[str, Any]:
    answer = pace(budget, now, go=[{"slot": slot, "force": force}])
    assert answer["slots"] == []
    return dict(answer["go"][0])


def four_in_flight(budget: WilloBudget) -> list[int]:
    """Four slots reserved and gone at T0, none answered yet."""
    slots = pace(budget, T0, count=4)["slots"]
    assert [s["at"] for s in slots] == [T0] * 4
    assert [go(budget, T0, s["slot"]) for s in slots] == [{"go": near(T0)}] * 4
    return [s["slot"] for s in slots]


@pytest.mark.parametrize("carried", [False, True], ids=["same run", "after a continue-as-new"])
def test_a_request_in_flight_counts_as_now_until_it_is_answered(carried: bool) -> None:
    """Four requests went at T0 and are slow to answer; a fifth planned for T0 + 1 s +
    slack may not go while they are in flight (Willo may count each of them any time
    until it answers: counting them at T0, when they went, would let the fifth go and
    draw a 429). Once they are answered, at T0 + 1.5, the fifth goes a window after
    the answers, not after the plans."""
    budget = WilloBudget({"limits": LIMITS})
    gone = four_in_flight(budget)
    fifth = pace(budget, T0, count=1)["slots"][0]
    assert fifth["at"] == near(T0 + 1 + SLACK)
    if carried:
        budget = WilloBudget(budget.state())

    # due, and the four still in flight: given back for a later slot (counted once)
    late = go(budget, T0 + 1.2, fifth["slot"])
    assert "go" not in late and late["slot"] != fifth["slot"]
    assert late["at"] == near(T0 + 1.2 + 1 + SLACK)  # in flight counts as now
    assert budget.usage()["used"] == 5

    # the four are answered at T0 + 1.5: Willo counted them no later than that
    pace(budget, T0 + 1.6, done=[[n, T0 + 1.5] for n in gone])
    again = go(budget, late["at"], late["slot"])
    assert again["at"] == near(T0 + 1.5 + 1 + SLACK), again
    assert go(budget, again["at"], again["slot"]) == {"go": near(T0 + 1.5 + 1 + SLACK)}
    assert budget.usage()["used"] == 5


def test_a_slot_goes_at_the_latest_of_its_plan_the_ask_and_every_go_before_it() -> None:
    """The checks are in the order of their times, as they would be in one process: a
    request asking early goes at its slot, one asking late at the time it asked, and
    none at a time before a go already allowed."""
    budget = WilloBudget({"limits": LIMITS})
    a, b, c = pace(budget, T0, count=3)["slots"]
    assert go(budget, T0 - LEAD, a["slot"]) == {"go": near(T0)}  # asked early: goes at its slot
    assert go(budget, T0 + 0.3, b["slot"]) == {"go": near(T0 + 0.3)}  # late: checked as it asks
    assert go(budget, T0 + 0.1, c["slot"]) == {"go": near(T0 + 0.3)}  # never before a go allowed
    # asked twice (an update retried): it goes, once
    assert go(budget, T0 + 0.4, c["slot"]) == {"go": near(T0 + 0.3)}
    assert budget.usage()["used"] == 3


def test_a_request_answered_late_moves_its_slot_and_one_over_is_not_in_flight() -> None:
    """An answer (or an end with no answer: ``done`` too) moves the slot to its time,
    and the request is no longer counted as in flight; a forced go goes."""
    budget = WilloBudget({"limits": LIMITS})
    gone = four_in_flight(budget)
    fifth = pace(budget, T0 + 0.1, count=1)["slots"][0]  # the four in flight: counted as now
    assert fifth["at"] == near(T0 + 0.1 + 1 + SLACK)
    pace(budget, T0 + 0.9, done=[[n, T0 + 0.9] for n in gone])  # answered late
    moved = go(budget, fifth["at"], fifth["slot"])
    assert moved["at"] == near(T0 + 0.9 + 1 + SLACK)  # a window after the answers, not the sends
    assert go(budget, moved["at"], moved["slot"]) == {"go": near(moved["at"])}  # over: not in flight
    sixth = pace(budget, T0 + 1.95, count=1)["slots"][0]
    assert go(budget, T0 + 1.96, sixth["slot"], force=True) == {"go": near(T0 + 1.96)}
    # an unknown slot (forgotten long ago) gets a new one, not counted again
    used = budget.usage()["used"]
    assert "slot" in go(budget, T0 + 200, 999_999)
    assert budget.usage()["used"] == used


class ScriptedBudget:
    """The budget workflow's answers, scripted; the steps a pacer took, recorded."""

    limits = LIMITS
    account = "default"

    def __init__(self, clock: list[float], goes: list[dict[str, Any]]) -> None:
        self.clock = clock
        self.goes = goes
        self.steps: list[tuple[Any, ...]] = []

    def reserve(self) -> dict[str, Any]:
        self.steps.append(("reserve", self.clock[0]))
        return {"at": T0 + 1, "slot": 1}

    def go(self, slot: int, force: bool = False) -> dict[str, Any]:
        self.steps.append(("go", slot, self.clock[0], force))
        return self.goes.pop(0)

    def done(self, slot: int, when: float) -> None:
        self.steps.append(("done", slot, when))


def test_a_worker_sends_only_once_the_budget_says_go_and_reports_the_answer() -> None:
    clock = [T0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    budget = ScriptedBudget(clock, [{"at": T0 + 2, "slot": 2}, {"go": T0 + 2.05}])
    pacer = FleetPacer(budget, clock=lambda: clock[0], sleep=sleep)  # type: ignore[arg-type]
    pacer.acquire()
    assert clock[0] == near(T0 + 2.05)  # it went when the budget said, not at its slot
    assert pacer.missed == 1
    assert budget.steps == [
        ("reserve", T0),
        ("go", 1, near(T0 + 1 - LEAD), False),  # asked a lead before its slot
        ("go", 2, near(T0 + 2 - LEAD), False),  # given back: asked again for the later one
    ]
    clock[0] += 0.3
    pacer.observe(0.3)  # answered: reported at the answer's time, once
    pacer.release()
    assert budget.steps[3:] == [("done", 2, near(T0 + 2.35))]


def test_a_worker_forces_its_request_after_the_most_slots_given_back() -> None:
    clock = [T0]
    goes = [{"at": T0 + i, "slot": i + 1} for i in range(1, MAX_RESLOTS)] + [{"go": T0 + MAX_RESLOTS}]
    budget = ScriptedBudget(clock, goes)
    pacer = FleetPacer(budget, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))  # type: ignore[arg-type]
    pacer.acquire()
    forced = [step[3] for step in budget.steps if step[0] == "go"]
    assert forced == [False] * (MAX_RESLOTS - 1) + [True]
    pacer.release()  # never sent after all: over, at the time it ended
    assert budget.steps[-1] == ("done", MAX_RESLOTS, near(clock[0]))


def test_a_daily_quota_alone_is_one_step_a_request() -> None:
    """No windows to keep (a daily quota only): a request reserves and goes at once,
    nothing in flight to report."""
    clock = [T0]
    budget = ScriptedBudget(clock, [])
    budget.limits = [0, 0, 3]
    pacer = FleetPacer(budget, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))  # type: ignore[arg-type]
    pacer.acquire()
    assert clock[0] == near(T0 + 1)  # its slot (a 429 may hold it)
    pacer.observe(0.1)
    assert budget.steps == [("reserve", T0)]
