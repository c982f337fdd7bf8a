"""Output agreement: a digest and a per-token fingerprint per record, and the share of identical outputs with the first
divergence between two runs. Known answers from the null engine (a FAKE): its outputs are 0s, and
`change_token_at=K` makes token K a 1, so identical runs agree on every request and a changed one first differs at K."""

import json

import pytest

from compare.analysis.agreement import cell_agreement
from compare.cli.main import main as compare_main
from compare.report.command import main as report_main
from compare.results.outputs import first_divergence, output_digest, output_fingerprint
from compare.results.records import RequestRecord
from compare.results.store import load_run
from tests.test_report import null_run

pytestmark = pytest.mark.unit


def test_equal_ids_give_equal_digests_and_the_fingerprint_finds_the_first_difference():
    ids = [128000, 9906, 11, 1917, 0, 49151]
    assert output_digest(ids) == output_digest(list(ids)) and output_digest(ids) != output_digest(ids[:-1])
    assert len(output_fingerprint(ids)) == 4 * len(ids)
    changed = ids[:3] + [1918] + ids[4:]
    assert first_divergence(output_fingerprint(ids), output_fingerprint(ids)) is None
    assert first_divergence(output_fingerprint(ids), output_fingerprint(changed)) == 3
    assert first_divergence(output_fingerprint(ids), output_fingerprint(ids[:4])) == 4  # one ended early
    every_id = output_fingerprint(range(49152))
    values = {every_id[i : i + 4] for i in range(0, len(every_id), 4)}
    assert len(values) > 30_000  # 16 bits per token: most of a real vocabulary's ids stay apart, none is stored


def _record(request_id: str, ids: list[int], ok: bool = True) -> RequestRecord:
    return RequestRecord(
        request_id,
        3,
        len(ids),
        output_tokens=len(ids),
        error=None if ok else "failed",
        output_digest=output_digest(ids),
        output_fingerprint=output_fingerprint(ids),
    )


def test_a_cell_agreement_matches_requests_by_id_and_skips_failed_ones():
    a = {"requests": [_record("r0", [1, 2, 3]), _record("r1", [1, 2, 3]), _record("r2", [5, 5]), _record("r3", [1])]}
    b = {
        "requests": [
            _record("r1", [1, 2, 4]),
            _record("r0", [1, 2, 3]),
            _record("r2", [6, 5]),
            _record("r3", [1], ok=False),
        ]
    }
    agreement = cell_agreement(a, b)
    assert agreement == {
        "num_compared": 3,
        "num_identical": 1,
        "identical_share": 1 / 3,
        "first_divergence_p50": 1.0,
        "first_divergence_min": 0,
    }
    text_only = {"requests": [RequestRecord("r0", 3, 3, output_tokens=3)]}
    assert cell_agreement(a, text_only) is None


def test_vs_reports_identical_outputs_for_identical_runs_and_the_first_divergence_of_a_changed_one(
    tmp_path, config_only_model, capsys
):
    small = {"output_tokens": 16, "repetitions": 4, "warmups": 0}
    a = null_run(tmp_path / "a", config_only_model, "1", **small)
    b = null_run(tmp_path / "b", config_only_model, "1", **small)
    changed = null_run(tmp_path / "changed", config_only_model, "1", "--engine-arg", "change_token_at=5", **small)
    stored = json.loads(a.read_text())["cells"][0]["requests"][0]
    assert len(stored["output_fingerprint"]) == 4 * 16 and "output_ids" not in stored  # ids stay out of the file
    cells = {name: load_run(path).doc["cells"][0] for name, path in (("a", a), ("b", b), ("changed", changed))}
    assert cell_agreement(cells["a"], cells["b"])["identical_share"] == 1.0
    diverged = cell_agreement(cells["a"], cells["changed"])
    assert (
        diverged["num_identical"] == 0
        and diverged["first_divergence_p50"] == 5
        and diverged["first_divergence_min"] == 5
    )
    capsys.readouterr()
    assert report_main([str(a), "--vs", str(changed)]) == 0
    out = capsys.readouterr().out
    assert "outputs identical for 0/4 requests; the others first differ at token 5 (p50), 5 at the earliest" in out


def test_a_sweep_point_whose_outputs_diverge_from_the_baseline_is_flagged(config_only_model, tmp_path, capsys):
    code = compare_main(
        [
            "--engine",
            "null",
            "--scenario",
            "single",
            "--quick",
            "--input-tokens",
            "32",
            "--output-tokens",
            "8",
            "--no-isolate",
            "--sweep",
            "null.change_token_at=-1,2",
            "--model",
            str(config_only_model),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    (folder,) = tmp_path.glob("sweep_sweep_*")
    (row,) = json.loads((folder / "sweep.json").read_text())["output_agreement"]
    assert row["point"] == "change_token_at=2" and row["first_divergence_min"] == 2 and row["warning"]
    assert "| **diverges**: outputs identical for 0/" in (folder / "ablation.md").read_text()
    assert "WARNING outputs identical for 0/" in capsys.readouterr().out
