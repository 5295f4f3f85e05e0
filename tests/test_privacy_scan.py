"""The privacy gate: the scan of every output for personal data, k-anonymity of a released
dataset, and the canary study (issue 7: identifiers planted in the input appear in no output)."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trials.bundle import read_members
from trials.demo import demo_logs, write_demo_study
from trials.errors import PrivacyError, TrialsError
from trials.privacy_scan import (
    Identifiers,
    check_run_directory,
    collect_identifiers,
    input_identifiers,
    k_anonymity,
    nhs_number_like,
    nhs_number_valid,
    scan_for_personal_data,
)
from trials.protocol import load_protocol


def scan_text(tmp_path: Path, text: str | bytes, identifiers=None, name: str = "out.txt"):
    """Scan ``text`` written as ``name`` in a folder of its own."""
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return scan_for_personal_data(folder, identifiers)


def kinds(findings) -> list[str]:
    return [f.kind for f in findings]


# --------------------------------------------------------------------------- patterns


@pytest.mark.parametrize(("text", "kind"), [
    ("contact jane.smith@example.co.uk today", "email"),
    ('"email": "J.SMITH99@NHS.NET"', "email"),
    ("mobile 07700 900123.", "phone"),
    ("mobile 07700900123", "phone"),
    ("tel: +44 7700 900123", "phone"),
    ("tel +447700900123", "phone"),
    ("office +44 (0)20 7946 0000", "phone"),
    ("office (020) 7946 0000", "phone"),
    ("Manchester 0161 496 0000", "phone"),
    ("from abroad 0044 113 496 0000", "phone"),
    ("New York +1 212 555 0199", "phone"),
    ("Paris +33 1 23 45 67 89", "phone"),
    ("date of birth: 14/03/1985", "date_of_birth"),
    ("DOB 1985-03-14", "date_of_birth"),
    ("she was born on 3 March 1985", "date_of_birth"),
    ("date_of_birth,postcode\n14-03-85,LS6 2QT", "date_of_birth"),

    ("Birth date: March 3rd, 1985", "date_of_birth"),
    ("NHS no 943 476 5919", "nhs_number"),
    ("nhs_number,4010232137", "nhs_number"),
    ("CHI 1403851239", "nhs_number"),  # Scotland: DDMMYY + 4 digits, modulus 11
])
def test_patterns_find_personal_data(tmp_path, text, kind):
    assert kind in kinds(scan_text(tmp_path, text))


@pytest.mark.parametrize("text", [
    hashlib.sha256(b"x").hexdigest() + "  " + hashlib.sha256(b"07700900123").hexdigest(),
    '"started": "2026-11-27T22:18:31+00:00", "finished": "2026-11-27T22:19:02+00:00"',
    "completed_at 2026-01-05T09:00 and 2026-04-01 06:00",
    "numpy==1.26.4\nscipy==1.14.1\nnetcdf4==1.7.2\npython 3.11.7 glibc2.36",
    '{"estimate": -1.07700900123, "se": 0.0161496000, "p": 1.2345678901e-05, "x": 9.434765919}',
    "[0.07700900123, -0.9434765919, 6777979670.5]",
    "0012345678 0000000000 1234567890 2026112712",  # padded, all equal, failing modulus 11
    "srcset='logo@2x.png 2x' url(icon@3x.svg) requirejs@2.3.6 @media screen",
    "newborn screening on 2026-01-05; stubborn value 14/03/1985",
    "date_of_birth was dropped at intake; pseudonymise_ids: true; small_cell_threshold: 5",
    "0 4 8 12 weeks; n = 60 (0 missing); 10 20 30 40 50",
    "+00:00 UTC offset; seed 20261127; 400 participants",
])
def test_patterns_pass_the_projects_own_kinds_of_output(tmp_path, text):
    assert scan_text(tmp_path, text) == []


def test_binary_bytes_need_a_plausible_address(tmp_path):
    # Random bytes of compressed NetCDF chunks spelt "ET@G.rz" in a real run.
    blob = b"\x00\xff\x13ET@G.rz\x01\x9c" + bytes(range(256))
    assert scan_text(tmp_path, blob, name="posterior.nc") == []
    leak = b"\x00\xff\x13jane.smith@example.com\x01\x9c" + bytes(range(256))
    assert kinds(scan_text(tmp_path, leak, name="posterior.nc")) == ["email"]


def test_nhs_modulus_11():
    assert nhs_number_valid("943 476 5919")  # the NHS data dictionary's example
    assert not nhs_number_valid("943 476 5918")
    assert not nhs_number_valid("1111111111")
    # Unspaced numbers must also lie in an issued range (4xx, 6xx-7xx, 32x-39x, CHI, 999).
    assert not nhs_number_like("9434765919") and nhs_number_like("4010232137")


# --------------------------------------------------------------------------- identifiers


def test_identifier_values_are_found_whatever_the_case_and_spacing(tmp_path):
    ids = collect_identifiers([pd.DataFrame({"name": ["Imogen Wolstenholme"],
                                             "participant_id": ["XQ0001-CANARY"]})],
                              ["name", "participant_id"])
    found = scan_text(tmp_path, "Note: IMOGEN   wolstenholme\nrow XQ0001-CANARY,ai_cbt", ids)
    assert [(f.kind, f.column) for f in found] == [("identifier", "name"),
                                                  ("identifier", "participant_id")]


def test_identifier_must_stand_on_its_own(tmp_path):
    ids = collect_identifiers([pd.DataFrame({"participant_id": ["CMP-0001"]})],
                              ["participant_id"])
    assert scan_text(tmp_path, "CMP-00012 xCMP-0001 CMP-0001a", ids) == []
    assert kinds(scan_text(tmp_path, "(CMP-0001)", ids)) == ["identifier"]


def test_reformatted_dates_and_nhs_numbers_are_still_found(tmp_path):
    ids = collect_identifiers([pd.DataFrame({"date_of_birth": ["14/03/1985"],
                                             "nhs_number": ["9434765919"]})],
                              ["date_of_birth", "nhs_number"])
    found = scan_text(tmp_path, "iso 1985-03-14; spaced 943 476 5919", ids)
    assert {(f.kind, f.column) for f in found} >= {("identifier", "date_of_birth"),
                                                   ("identifier", "nhs_number")}


def test_short_and_placeholder_values_are_not_searched():
    ids = collect_identifiers([pd.DataFrame({"name": ["Al", "unknown", "Bea Ng", None],
                                             "participant_id": ["17", "123456", "A-1", "B-22"]})],
                              ["name", "participant_id"])
    assert set(ids.values) == {"bea ng", "123456", "b-22"}
    assert ids.skipped == 4


def test_excerpts_mask_every_finding(tmp_path):
    ids = Identifiers({"imogen wolstenholme": "name"})
    found = scan_text(tmp_path, "Imogen Wolstenholme <imogen.w@example.org> 07700 900123", ids)
    assert kinds(found) == ["identifier", "email", "phone"]
    for f in found:
        assert "wolstenh" not in f.excerpt.lower() and "900123" not in f.excerpt
        assert "example" not in f.excerpt and "0770" not in f.excerpt
    assert found[1].excerpt == "[identifier] <[email]> [phone]"


def test_html_entities_are_decoded(tmp_path):
    ids = Identifiers({"siobhan o'neill": "name"})
    assert kinds(scan_text(tmp_path, "<td>Siobhan O&#x27;Neill</td>", ids, "r.html")) == [
        "identifier"]


def _png(**text: str) -> bytes:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for i, (key, value) in enumerate(text.items()):
        if i % 3 == 0:
            info.add_text(key, value)
        elif i % 3 == 1:
            info.add_text(key, value, zip=True)  # zTXt: compressed
        else:
            info.add_itxt(key, value, zip=True)  # compressed iTXt
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def test_png_metadata_standalone_and_embedded_in_html(tmp_path):
    png = _png(Software="matplotlib", Author="imogen.w@example.org", Comment="07700 900123")
    assert b"example.org" not in png and b"900123" not in png  # compressed chunks
    assert kinds(scan_text(tmp_path, png, name="figure.png")) == ["email", "phone"]
    page = b'<img alt="effect" src="data:image/png;base64,' + base64.b64encode(png) + b'">'
    found = scan_text(tmp_path, page, name="brief.html")
    assert {(f.file, f.kind) for f in found} == {("brief.html::image1", "email"),
                                                 ("brief.html::image1", "phone")}
    clean = b'<img src="data:image/png;base64,' + base64.b64encode(_png(Software="x")) + b'">'
    assert scan_text(tmp_path, clean, name="brief.html") == []


def test_zip_members_are_scanned_even_when_compressed(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("results.json", '{"ok": true}\n' * 50)
        zf.writestr("notes/contact.txt", "write to imogen.w@example.org\n" * 50)
    assert b"example.org" not in buf.getvalue()
    found = scan_text(tmp_path, buf.getvalue(), name="bundle.zip")
    assert {(f.file, f.kind) for f in found} == {("bundle.zip::notes/contact.txt", "email")}


def test_netcdf_strings_in_compressed_variables(tmp_path):
    import xarray as xr

    ids = np.array([b"XQ0001-CANARY", b"XQ0002-CANARY"], dtype="S13")
    ds = xr.Dataset({"y": ("obs", [1.0, 2.0])}, coords={"obs": ids})
    path = tmp_path / "posterior.nc"
    ds.to_netcdf(path, engine="h5netcdf", encoding={"obs": {"zlib": True}})
    assert b"XQ0001" not in path.read_bytes()
    found = scan_for_personal_data([path], ["xq0002-canary"])
    assert [(f.file, f.kind) for f in found] == [(f"{path}::strings", "identifier")]


# --------------------------------------------------------------------------- k-anonymity


def test_k_anonymity_counts_people_not_rows():
    frame = pd.DataFrame({
        "pid": ["a", "a", "b", "c", "c", "d", "e"],
        "sex": ["f", "f", "f", "m", "m", "m", None],
        "age": ["18-24"] * 3 + ["65+"] * 4,
    })
    result = k_anonymity(frame, ["sex", "age"], 2, unit="pid")
    assert result.smallest == 1 and result.n_classes == 3 and not result.ok
    # e's missing sex is a class of its own
    [below] = result.below.to_dict("records")
    assert pd.isna(below["sex"]) and below["age"] == "65+" and below["size"] == 1
    rows = k_anonymity(frame, ["age"], 3)
    assert rows.smallest == 3 and rows.ok and rows.below.empty
    assert k_anonymity(frame, [], 6, unit="pid").smallest == 5


def test_k_anonymity_rejects_bad_arguments():
    frame = pd.DataFrame({"a": [1]})
    with pytest.raises(PrivacyError, match="'b'"):
        k_anonymity(frame, ["a", "b"], 2)
    with pytest.raises(PrivacyError, match="at least 1"):
        k_anonymity(frame, ["a"], 0)


# --------------------------------------------------------------------------- canary study

FIRST = ["Imogen", "Tobias", "Siobhan", "Oluwaseun", "Margarethe", "Lachlan", "Perpetua",
         "Ravindra", "Eilidh", "Cosmo"]
LAST = ["Wolstenholme", "Featherstonehaugh", "Postlethwaite", "Oyelaran", "Cholmondeley",
        "Ramsbottom", "Throckmorton", "Ekwueme", "Quarrington", "Vandersteen"]


def _nhs_numbers(rng: np.random.Generator, n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:  # the 999 range is reserved for tests
        body = [9, 9, 9, *rng.integers(0, 10, 6)]
        check = 11 - sum(w * d for w, d in zip(range(10, 1, -1), body, strict=True)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            digits = "".join(map(str, [*body, check]))
            out.append(f"{digits[:3]} {digits[3:6]} {digits[6:]}")
    return out


def plant_canaries(data: Path) -> dict[str, list[str]]:
    """Rewrite the demo's data and logs with canary identifiers; return every planted value."""
    rng = np.random.default_rng(7)
    visits = pd.read_csv(data, dtype=str, keep_default_na=False)
    people = sorted(visits["participant_id"].unique())
    new_id = {p: f"XQ{i:04d}-CANARY" for i, p in enumerate(people, 1)}
    n = len(people)
    names = [f"{FIRST[i % 10]} {LAST[(i * 3 + i // 10) % 10]}" for i in range(n)]
    emails = [f"{nm.lower().replace(' ', '.')}{i}@example.co.uk" for i, nm in enumerate(names)]
    dobs = [f"{d:02d}/{m:02d}/{y}" for d, m, y in zip(rng.integers(1, 29, n),
                                                       rng.integers(1, 13, n),
                                                       rng.integers(1950, 2006, n), strict=True)]
    letters = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))
    postcodes = [f"{a}{b}{d} {e}{f}{g}" for a, b, d, e, f, g in zip(
        rng.choice(["L", "M", "B", "S", "N"], n), rng.choice(["S", "E", "N", "W", "T"], n),
        rng.integers(1, 30, n), rng.integers(1, 10, n), rng.choice(letters, n),
        rng.choice(letters, n), strict=True)]
    phones = [f"07700 900{i:03d}" for i in range(n)]
    person = {p: i for i, p in enumerate(people)}
    idx = visits["participant_id"].map(person)
    visits.insert(1, "name", [names[i] for i in idx])
    visits.insert(2, "email", [emails[i] for i in idx])
    visits.insert(3, "nhs_number", [_nhs_numbers(rng, n)[i] for i in idx])
    visits.insert(4, "date_of_birth", [dobs[i] for i in idx])
    visits.insert(5, "postcode", [postcodes[i] for i in idx])
    visits["clinician_note"] = [f"Called {names[i]} on {phones[i]}, will ring back"
                                for i in idx]
    visits["participant_id"] = visits["participant_id"].map(new_id)
    visits.to_csv(data, index=False)
    staff = [f"Dr Hyacinth Abernethy-Nwosu 0113 496 0{i:03d}" for i in range(n)]
    clinicians: dict[str, str] = {}
    notes: set[str] = set()
    for path in demo_logs(data).values():
        log = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "participant_id" in log.columns:  # a free-text column the protocol does not name
            log["note"] = [staff[person[p]] for p in log["participant_id"]]
            notes.update(log["note"])
            log["participant_id"] = log["participant_id"].map(new_id)
        if "clinician_id" in log.columns:
            clinicians = {c: f"DR-CANARY-{i:02d}" for i, c in enumerate(log["clinician_id"], 1)}
            log["clinician_id"] = log["clinician_id"].map(clinicians)
        log.to_csv(path, index=False)
    return {
        "participant_id": list(new_id.values()), "clinician_id": list(clinicians.values()),
        "name": names, "email": emails,
        "nhs_number": list(visits.drop_duplicates("participant_id")["nhs_number"]),
        "date_of_birth": dobs, "postcode": postcodes, "clinician_note": phones,
        "note": sorted(s.removeprefix("Dr ") for s in notes),
    }


def spellings(value: str) -> set[str]:
    """A planted value as written and as it might be re-written: no spaces, an ISO date."""
    out = {value.lower(), value.lower().replace(" ", "")}
    if re.fullmatch(r"\d\d/\d\d/\d{4}", value):
        out.add(f"{value[6:]}-{value[3:5]}-{value[:2]}")
    return out


@dataclass(frozen=True)
class CanaryRun:
    protocol: Path
    data: Path
    run_dir: Path
    canaries: dict[str, list[str]]
    fits: object


@pytest.fixture(scope="module")
def canary_run(tmp_path_factory: pytest.TempPathFactory) -> CanaryRun:
    """The 60-participant demo with canaries planted in its input, locked and run once."""
    import trials.pipeline
    from trials.lock import lock_protocol

    base = tmp_path_factory.mktemp("canary")
    protocol, data = write_demo_study(base / "study", n=60, seed=7)
    canaries = plant_canaries(data)
    lock_protocol(protocol)
    fitted = []
    real_fit = trials.pipeline.fit_analyses

    def recording_fit(*args, **kwargs):
        fitted.append(real_fit(*args, **kwargs))
        return fitted[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trials.pipeline, "fit_analyses", recording_fit)
        result = trials.pipeline.run_study(protocol, [data], base / "run", logs=demo_logs(data))
    assert result.bundle is not None and result.report is not None
    return CanaryRun(protocol, data, result.run_dir, canaries, fitted[0])


def _outputs(run_dir: Path) -> dict[str, bytes]:
    """Every file of the run directory and every member of its bundle."""
    out = {p.relative_to(run_dir).as_posix(): p.read_bytes()
           for p in sorted(run_dir.rglob("*")) if p.is_file()}
    out.update({f"bundle.zip::{n}": b for n, b in read_members(run_dir / "bundle.zip").items()})
    return out


def test_canaries_planted_in_the_input_appear_in_no_output(canary_run):
    inputs = b"".join(p.read_bytes() for p in [canary_run.data,
                                               *demo_logs(canary_run.data).values()]).lower()
    outputs = _outputs(canary_run.run_dir)
    assert {"results.json", "brief.html", "brief.qmd", "bundle.zip::brief.html",
            "bundle.zip::protocol/audit.jsonl"} <= set(outputs)
    checked = 0
    for column, values in canary_run.canaries.items():
        assert len(values) >= 20, column
        for value in values:
            assert value.lower().encode() in inputs, (column, value)  # really planted
            for needle in spellings(value):
                leaks = [name for name, body in outputs.items()
                         if needle.encode() in body.lower()]
                assert leaks == [], f"{column} canary {value!r} found in {leaks}"
                checked += 1
    assert checked > 700


def test_demo_outputs_scan_clean_with_the_input_identifiers(canary_run):
    protocol = load_protocol(canary_run.protocol)
    ids = input_identifiers(protocol, [canary_run.data], demo_logs(canary_run.data))
    # participant and clinician IDs, and every direct identifier (with reformatted variants)
    assert {"participant_id", "clinician_id", "name", "email", "nhs_number", "date_of_birth",
            "postcode"} <= set(ids.values.values())
    assert "xq0001-canary" in ids.values and ids.skipped == 0
    assert scan_for_personal_data(canary_run.run_dir, ids) == []
    # and the scan does see the canaries where they are: in the input
    found = scan_for_personal_data([canary_run.data], ids)
    assert {"identifier", "email", "phone", "nhs_number", "date_of_birth"} <= set(kinds(found))


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_planted_leak_fails_the_run_and_leaves_the_earlier_run(canary_run, monkeypatch):
    import trials.pipeline

    before = _snapshot(canary_run.run_dir)
    real_lock = trials.pipeline.environment_lock
    monkeypatch.setattr(trials.pipeline, "fit_analyses", lambda *a, **k: canary_run.fits)
    monkeypatch.setattr(trials.pipeline, "environment_lock",
                        lambda: real_lock() + "# maintainer: jane.doe@example.org\n")
    with pytest.raises(PrivacyError) as info:
        trials.pipeline.run_study(canary_run.protocol, [canary_run.data], canary_run.run_dir,
                                  logs=demo_logs(canary_run.data), render=False)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, TrialsError)
    assert message.startswith("environment.txt: an e-mail address found in the run's outputs")
    assert "jane.doe" not in message and "nothing was written" in message
    assert _snapshot(canary_run.run_dir) == before
    assert [p.name for p in canary_run.run_dir.parent.iterdir() if "staging" in p.name] == []


def test_a_shared_dataset_below_k_fails_the_run(canary_run, tmp_path, monkeypatch):
    import trials.pipeline
    from trials.lock import lock_protocol

    study = tmp_path / "study"
    shutil.copytree(canary_run.data.parent, study / "data")
    text = canary_run.protocol.read_text(encoding="utf-8")
    shared = re.sub(r"(?m)^  share_analysis_dataset: false$", "  share_analysis_dataset: true",
                    text)
    assert shared != text
    (study / "protocol.yaml").write_text(shared, encoding="utf-8")
    lock_protocol(study / "protocol.yaml")
    data = study / "data" / canary_run.data.name
    monkeypatch.setattr(trials.pipeline, "fit_analyses", lambda *a, **k: canary_run.fits)
    with pytest.raises(PrivacyError) as info:
        trials.pipeline.run_study(study / "protocol.yaml", [data], tmp_path / "run",
                                  logs=demo_logs(data), render=False)
    message = str(info.value)
    assert "\n" not in message
    assert re.match(r"analysis_dataset\.csv: k-anonymity 1 is below the small-cell threshold 5 "
                    r"on practice, severity_stratum, age_group, gender, ethnicity, imd_quintile",
                    message), message
    assert not (tmp_path / "run").exists()


def test_check_run_directory_passes_a_k_anonymous_shared_dataset(canary_run, tmp_path):
    protocol = load_protocol(canary_run.protocol)
    protocol = protocol.model_copy(update={"privacy": protocol.privacy.model_copy(
        update={"share_analysis_dataset": True})})
    level = [*protocol.design.strata, *protocol.data.participant_columns]
    rows = [{"participant_id": f"P-{i:04d}", **{c: "same" for c in level}} for i in range(5)]
    pd.DataFrame(rows).to_csv(tmp_path / "analysis_dataset.csv", index=False)
    check_run_directory(tmp_path, protocol, [canary_run.data], demo_logs(canary_run.data))
    pd.DataFrame(rows[:4]).to_csv(tmp_path / "analysis_dataset.csv", index=False)
    with pytest.raises(PrivacyError, match=r"k-anonymity 4 is below .* threshold 5"):
        check_run_directory(tmp_path, protocol, [canary_run.data], demo_logs(canary_run.data))


def test_a_birth_date_column_far_from_its_header_is_found(tmp_path):
    header = ",".join(["participant_id", "arm", *[f"phq9_{i}" for i in range(1, 10)],
                       "completed_at", "practice", "severity_stratum", "DOB"])
    row = ",".join(["P-1", "ai_cbt", *"012301230", "2026-01-05T09:00", "practice_01", "mild"])
    text = header + "\n" + "\n".join(f"{row},0{i}/03/1985" for i in range(1, 4)) + "\n"
    # as plain text only the first row is near enough to the word
    assert len(scan_text(tmp_path, text, name="out.txt")) == 1
    found = scan_text(tmp_path, text, name="analysis_dataset.csv")
    assert [(f.kind, f.column) for f in found] == [("date_of_birth", "DOB")] * 3
    assert all("mild,[date_of_birth]" in f.excerpt and "1985" not in f.excerpt for f in found)
