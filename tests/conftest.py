"""Shared fixtures. Tests that need the demo's data write it fresh into a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Pseudonyms in tests are keyed by a fixed test key, never by a key file in the source tree.
os.environ.setdefault("TRIALS_PSEUDONYM_KEY", "test-key-not-secret")

REFERENCE = Path(__file__).parent / "reference"


def demo_protocol(edit=None):
    """The demo protocol, parsed after ``edit(data)`` changed its plain data (if given)."""
    import copy

    import yaml

    from trials.demo import demo_protocol_text
    from trials.protocol import parse_protocol

    data = copy.deepcopy(yaml.safe_load(demo_protocol_text()))
    if edit:
        edit(data)
    return parse_protocol(data, "test.yaml")


@pytest.fixture(scope="session")
def ancova_frame():
    """tests/reference/ancova_data.csv with the treatment indicator (R lm reference input)."""
    import pandas as pd

    data = pd.read_csv(REFERENCE / "ancova_data.csv")
    data["treated"] = (data["arm"] == "ai_cbt").astype(int)
    return data


@pytest.fixture(scope="session")
def r_lm_arm():
    """R lm's row for the treatment term (tests/reference/ancova_lm.csv, R 4.2.2)."""
    import pandas as pd

    return pd.read_csv(REFERENCE / "ancova_lm.csv").set_index("term").loc["armai_cbt"]


@pytest.fixture
def demo_study(tmp_path: Path) -> tuple[Path, Path]:
    """The demo protocol (unlocked) and its simulated data: (protocol.yaml, data/demo.csv)."""
    from trials.demo import write_demo_study

    return write_demo_study(tmp_path / "study")


@pytest.fixture
def small_study(tmp_path: Path) -> tuple[Path, Path]:
    """A 60-participant demo study: fast to run end to end."""
    from trials.demo import write_demo_study

    return write_demo_study(tmp_path / "study", n=60, seed=7)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    """The whole demo, run once per test session (per xdist worker)."""
    from trials.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("demo") / "out")
