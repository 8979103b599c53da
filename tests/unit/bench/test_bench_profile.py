"""py-spy collapsed stacks -> hot spots."""

from __future__ import annotations

import pytest
from bench_profile import hot_spots, parse_collapsed, record_cmd

RAW = """main (/w/libs/platform/src/cascade_platform/server.py:139);run (asyncio/runners.py:118);_run (asyncio/events.py:80) 50
main (/w/libs/platform/src/cascade_platform/server.py:139);Pipeline.run (/w/libs/core/src/cascade_core/stages.py:250);CandidateSet.concat (/w/libs/core/src/cascade_core/stages.py:117);asarray (/v/site-packages/numpy/x.py:3) 30
main (/w/libs/platform/src/cascade_platform/server.py:139);AnnSource.apply (/w/services/retrieval/src/cascade_retrieval/stages.py:60) 20

"""


def test_parse_collapsed() -> None:
    stacks = parse_collapsed(RAW + "garbage line without count x\n")
    assert [c for _, c in stacks] == [50, 30, 20]
    assert stacks[2][0][-1].startswith("AnnSource.apply")


def test_hot_spots_charge_the_innermost_cascade_frame_not_the_entry_point() -> None:
    spots = hot_spots(parse_collapsed(RAW))
    mine = dict(spots["cascade"])
    assert mine["CandidateSet.concat (cascade_core/stages.py:117)"] == pytest.approx(0.3)
    assert mine["AnnSource.apply (cascade_retrieval/stages.py:60)"] == pytest.approx(0.2)
    assert mine["(no cascade frame: event loop / grpc / interpreter)"] == pytest.approx(0.5)
    leaf = dict(spots["self"])
    assert leaf["asarray (numpy/x.py:3)"] == pytest.approx(0.3)
    assert spots["samples"] == [("samples", 100.0)]


def test_record_cmd() -> None:
    cmd = record_cmd("py-spy", 42, 10, "out.txt")
    assert cmd[:4] == ["py-spy", "record", "-p", "42"] and "--nonblocking" in cmd and "raw" in cmd
