"""The doctor's rules on their own: link horizons, clock skew from a Date header, disk
thresholds, the verdict and its exit code, and a check that fails being a finding, not a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from arsync.clock import FrozenClock
from arsync.doctor import (
    QBO_MAX_LIFE,
    Finding,
    Report,
    Status,
    Thresholds,
    diagnose,
    horizon,
    lines,
    size_said,
    skew_seconds,
)

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


# -- horizons ---------------------------------------------------------------------------------


def test_xero_lapses_sixty_days_after_its_last_refresh() -> None:
    found = horizon(
        "xero",
        refresh_expires_at=None,
        refreshed_at=NOW - timedelta(days=10),
        connected_at=NOW - timedelta(days=400),
    )
    assert found.at == NOW + timedelta(days=50)
    assert found.rolling and found.why == "60 days unused"


def test_quickbooks_rolls_for_a_hundred_days_but_ends_five_years_after_consent() -> None:
    rolling = horizon(
        "qbo",
        refresh_expires_at=NOW + timedelta(days=100),
        refreshed_at=NOW,
        connected_at=NOW - timedelta(days=30),
    )
    assert rolling.at == NOW + timedelta(days=100) and rolling.rolling
    ending = horizon(
        "qbo",
        refresh_expires_at=NOW + timedelta(days=100),
        refreshed_at=NOW,
        connected_at=NOW - QBO_MAX_LIFE + timedelta(days=12),
    )
    assert ending.at == NOW + timedelta(days=12)
    assert not ending.rolling and ending.why == "QuickBooks' five years from consent"


def test_the_platforms_own_expiry_wins_when_it_is_sooner() -> None:
    found = horizon(
        "qbo",
        refresh_expires_at=NOW + timedelta(days=3),
        refreshed_at=NOW,
        connected_at=NOW,
    )
    assert found.at == NOW + timedelta(days=3)
    assert found.why == "the refresh token's own expiry"


# -- clock skew -------------------------------------------------------------------------------


def date_header(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


@pytest.mark.parametrize(
    ("theirs", "expected"),
    [
        (NOW, 0.0),
        (NOW - timedelta(seconds=1), 0.0),  # Date is given to the second: still in step
        (NOW + timedelta(minutes=10), 600.0),  # the platform ahead: this machine behind
        (NOW - timedelta(minutes=3), -180.0),
    ],
)
def test_skew_from_a_date_header(theirs: datetime, expected: float) -> None:
    assert skew_seconds(date_header(theirs), NOW) == expected


@pytest.mark.parametrize("header", [None, "", "yesterday-ish"])
def test_no_skew_without_a_readable_date(header: str | None) -> None:
    assert skew_seconds(header, NOW) is None


# -- words and verdict ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "said"),
    [(512, "512 bytes"), (1536 * 1024, "1.5 MB"), (1024**3, "1 GB"), (5 * 1024**4, "5 TB")],
)
def test_sizes_as_a_person_reads_them(count: int, said: str) -> None:
    assert size_said(count) == said


def report_of(*statuses: Status) -> Report:
    return Report(
        Path("/srv/firm"),
        NOW,
        [
            Finding("disk", "disk space", s, f"said {i}", "do this", None)
            for i, s in enumerate(statuses)
        ],
    )


def test_warnings_alone_exit_0_and_any_problem_exits_1() -> None:
    assert report_of(Status.OK, Status.OK).exit_code == 0
    assert report_of(Status.OK, Status.WARNING).exit_code == 0
    assert report_of(Status.WARNING, Status.PROBLEM).exit_code == 1
    assert report_of(Status.PROBLEM).to_json()["healthy"] is False


def test_each_fix_is_printed_under_its_finding_and_the_verdict_last() -> None:
    printed = [text for _, text in lines(report_of(Status.OK, Status.PROBLEM, Status.WARNING))]
    assert printed[2] == "  ok       disk space  said 0"  # no fix under an ok
    assert printed[3] == "  PROBLEM  disk space  said 1"
    assert printed[4] == "                       fix: do this"
    assert (
        printed[-1] == "1 problem and 1 warning: do each fix above, then run `arsync doctor` again."
    )
    assert [t for _, t in lines(report_of(Status.OK))][-1] == "All good: nothing to fix."


# -- diagnose on a bare home ------------------------------------------------------------------


def bare_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "arsync.toml").write_text('[store]\nurl = "sqlite:///state/arsync.db"\n')
    return home


def test_free_space_below_the_critical_threshold_is_a_problem(tmp_path: Path) -> None:
    home = bare_home(tmp_path)
    report = diagnose(
        home,
        thresholds=Thresholds(critical_free_bytes=1024**6),  # more than any disk holds
        unit=tmp_path / "none.service",
        clock=FrozenClock(NOW),
    )
    [disk] = [f for f in report.findings if f.check == "disk"]
    assert disk.status is Status.PROBLEM and disk.said.startswith("only ")
    assert disk.fix is not None and disk.fix.startswith(f"free space on the disk holding {home}")
    assert report.exit_code == 1
    assert report.at == NOW  # the injected clock, not the machine's


def test_a_check_that_fails_is_a_finding_and_the_others_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arsync import doctor

    def broken(self: object) -> None:
        raise RuntimeError("the disk check fell over")

    monkeypatch.setattr(doctor._Doctor, "disk", broken)
    report = diagnose(bare_home(tmp_path), unit=tmp_path / "none.service", clock=FrozenClock(NOW))
    [disk] = [f for f in report.findings if f.check == "disk"]
    assert disk.status is Status.PROBLEM
    assert disk.said == "could not be checked: RuntimeError: the disk check fell over"
    assert {f.check for f in report.findings} >= {"mail", "systemd"}
