"""The GPU kit's CPU side: wheel-set resolution, the packing round-trip, staging and install against fake
wheels and a fake site-packages tree, and validate's plan. The fake wheels here are built by the test."""

import json
import sys
from pathlib import Path

import pytest

from tests.fakes import fake_wheel
from tools.gpu import device, pack, prepare, validate
from tools.gpu.stage import DropRule, apply_drops, install_wheel
from tools.gpu.wheelsets import canonical, load_lock, resolve


def lock_with(*entries, common=(), image=("torch", "transformers")):
    def wheel(name, version):
        return {
            "name": name,
            "version": version,
            "file": f"{name.replace('-', '_')}-{version}-py3-none-any.whl",
            "sha256": "0" * 64,
            "bytes": 1,
        }

    return {
        "device_image": {"packages": list(image)},
        "common": {"wheels": [wheel(*c) for c in common]},
        "sets": {"vllm": {"wheels": [wheel(*e) for e in entries], "imports": ["vllm"], "drop": []}},
    }


@pytest.mark.unit
def test_the_shipped_lock_resolves_for_both_engines_with_one_version_each():
    lock = load_lock()
    for engine in ("vllm", "sglang"):
        wheel_set = resolve(lock, engine)
        names = [canonical(w.name) for w in wheel_set.wheels]
        assert len(names) == len(set(names)) and engine in names or f"{engine}-kernel" in names
        assert all(len(w.sha256) == 64 and w.bytes > 0 for w in wheel_set.wheels)
        assert not {"torch", "triton", "numpy"} & set(names)  # the image's own copies stay in charge
        replacing = {canonical(e["name"]) for e in lock["sets"][engine]["wheels"] if e.get("replaces_image")}
        assert replacing == ({"transformers", "tokenizers"} if engine == "sglang" else set())  # each with its reason
        assert wheel_set.imports and all(d.reason for d in wheel_set.drops)


@pytest.mark.unit
def test_resolution_refuses_two_versions_and_packages_the_image_has():
    with pytest.raises(ValueError, match="two versions of pydantic: 2.1 and 2.2"):
        resolve(lock_with(("vllm", "0.26.0"), ("pydantic", "2.2"), common=[("pydantic", "2.1")]), "vllm")
    with pytest.raises(ValueError, match="torch is already on the device image"):
        resolve(lock_with(("vllm", "0.26.0"), ("torch", "2.11.0")), "vllm")
    allowed = lock_with(("vllm", "0.26.0"), ("transformers", "5.12.1"))
    allowed["sets"]["vllm"]["wheels"][1]["replaces_image"] = "the engine pins this version"
    assert "transformers" in [w.name for w in resolve(allowed, "vllm").wheels]
    with pytest.raises(KeyError, match="no wheel set 'tensorrt'"):
        resolve(lock_with(("vllm", "0.26.0")), "tensorrt")
    wheel_set = resolve(lock_with(("vllm", "0.26.0"), common=[("llama-models", "0.3.0")]), "vllm")
    assert [w.requirement for w in wheel_set.wheels] == ["llama-models==0.3.0", "vllm==0.26.0"]


@pytest.mark.unit
@pytest.mark.parametrize("size", [0, 1, 1000, 4096, 4097])
def test_parts_reassemble_byte_exact(tmp_path, size):
    bundle = tmp_path / "bundle.bin"
    bundle.write_bytes(bytes(range(256)) * (size // 256) + bytes(size % 256))
    parts = pack.split(bundle, tmp_path / "parts", part_bytes=1024)
    assert len(parts) == -(-size // 1024) and all(p["bytes"] <= 1024 for p in parts)
    manifest = {"parts": parts, "bundle_sha256": pack.sha256_file(bundle)}
    pack.join(tmp_path / "parts", manifest, tmp_path / "joined.bin")
    assert (tmp_path / "joined.bin").read_bytes() == bundle.read_bytes()


@pytest.mark.unit
def test_a_missing_or_corrupt_part_is_named(tmp_path):
    bundle = tmp_path / "bundle.bin"
    bundle.write_bytes(b"x" * 3000)
    manifest = {"parts": pack.split(bundle, tmp_path / "parts", 1024), "bundle_sha256": pack.sha256_file(bundle)}
    (tmp_path / "parts" / "part-001").write_bytes(b"y" * 1024)
    with pytest.raises(ValueError, match="part-001 is corrupt"):
        pack.join(tmp_path / "parts", manifest, tmp_path / "out")
    (tmp_path / "parts" / "part-002").unlink()
    with pytest.raises(FileNotFoundError, match="missing parts: part-002"):
        pack.join(tmp_path / "parts", manifest, tmp_path / "out")


@pytest.mark.unit
def test_packing_is_deterministic_and_round_trips(tmp_path):
    tree = tmp_path / "tree"
    (tree / "pkg" / "sub").mkdir(parents=True)
    (tree / "pkg" / "__init__.py").write_text("x = 1\n")
    (tree / "pkg" / "sub" / "lib.so").write_bytes(bytes(range(256)) * 64)
    (tree / "pkg" / "sub" / "lib.so").chmod(0o755)
    first = pack.write_tar_xz(tree, tmp_path / "a.tar.xz", preset=1)
    (tree / "pkg" / "__init__.py").touch()  # a newer mtime changes nothing
    pack.write_tar_xz(tree, tmp_path / "b.tar.xz", preset=1)
    assert (tmp_path / "a.tar.xz").read_bytes() == (tmp_path / "b.tar.xz").read_bytes()
    assert first["num_files"] == 2 and first["raw_bytes"] == 6 + 256 * 64
    assert pack.extract(tmp_path / "a.tar.xz", tmp_path / "back") == 2
    assert (tmp_path / "back" / "pkg" / "sub" / "lib.so").read_bytes() == (tree / "pkg" / "sub" / "lib.so").read_bytes()


@pytest.mark.unit
def test_wheels_stage_like_pip_no_deps_and_drops_say_what_and_why(tmp_path):
    wheel = fake_wheel(
        tmp_path,
        "kern",
        "1.0",
        {
            "kern/__init__.py": b"",
            "kern/flash_ops.so": b"F" * 100,
            "kern/sm100/k.cubin": b"B" * 50,
            "kern-1.0.data/purelib/extra.py": b"",
        },
    )
    site = tmp_path / "site"
    install_wheel(wheel, site)
    files = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert files == [
        "extra.py",
        "kern-1.0.dist-info/METADATA",
        "kern-1.0.dist-info/RECORD",
        "kern/__init__.py",
        "kern/flash_ops.so",
        "kern/sm100/k.cubin",
    ]  # purelib moved to the root, scripts left out
    report = apply_drops(
        site,
        [
            DropRule("kern/flash_ops*.so", "attention backend is triton"),
            DropRule("*/sm100/*", "Blackwell kernels; the device is Hopper"),
            DropRule("nothing/*", "stale rule"),
        ],
    )
    assert [(r["files"], r["bytes"]) for r in report] == [(1, 100), (1, 50), (0, 0)]
    assert not (site / "kern" / "sm100").exists() and (site / "kern" / "__init__.py").exists()


@pytest.mark.engine
def test_prepare_builds_parts_once_and_stage_install_checks_them_on_a_fake_device(tmp_path, monkeypatch):
    wheels = tmp_path / "work" / "wheels"
    wheels.mkdir(parents=True)
    fake_wheel(
        wheels,
        "fakeengine",
        "1.0",
        {"fakeengine/__init__.py": b"import fakedep\n", "fakeengine/big.bin": bytes(5000)},
        requires=("fakedep>=1", "numpy", "absentdist; python_version < '3'"),
    )
    fake_wheel(wheels, "fakedep", "2.0", {"fakedep/__init__.py": b""})
    entries = [
        {
            "name": n,
            "version": v,
            "file": f"{n}-{v}-py3-none-any.whl",
            "sha256": pack.sha256_file(wheels / f"{n}-{v}-py3-none-any.whl"),
            "bytes": 1,
        }
        for n, v in (("fakeengine", "1.0"), ("fakedep", "2.0"))
    ]
    lock = {
        "device_image": {"packages": ["torch"]},
        "sets": {
            "vllm": {
                "wheels": entries,
                "imports": ["fakeengine", "nosuchmodule"],
                "drop": [{"pattern": "fakeengine/big.bin", "reason": "not needed"}],
                "env": {"X": "1"},
            }
        },
    }
    wheel_set = resolve(lock, "vllm")
    manifest = prepare.build(wheel_set, tmp_path / "work", part_bytes=150)
    assert manifest["rebuilt"] and manifest["dropped_bytes"] == 5000 and len(manifest["parts"]) >= 2
    again = prepare.build(wheel_set, tmp_path / "work", part_bytes=150)
    assert not again["rebuilt"] and again["bundle_sha256"] == manifest["bundle_sha256"]  # idempotent
    assert "3 part(s) of up to" in prepare.summary_lines(manifest)[0]

    # the device: one part per call, carried under .gpu/carry/vllm/, installed after the last
    home, carried = tmp_path / "device-tmp", tmp_path / "call" / "vllm"
    for index, part in enumerate(manifest["parts"]):
        carried.mkdir(parents=True, exist_ok=True)
        for old in carried.glob("part-*"):
            old.unlink()
        (carried / "manifest.json").write_text(json.dumps(manifest))
        (carried / part["file"]).write_bytes((tmp_path / "work" / "carry" / "vllm" / part["file"]).read_bytes())
        held = device.stage("vllm", carry=tmp_path / "call", home=home)
        assert len(held["held"]) == index + 1
    assert held["missing"] == [] and device.status(home)["engines"]["vllm"]["parts_held"] == len(manifest["parts"])
    monkeypatch.chdir(tmp_path)
    report = device.install("vllm", home=home, python=sys.executable)
    assert report["imports"] == {"fakeengine": "ok", "nosuchmodule": "missing module nosuchmodule"}
    assert report["missing_distributions"] == []  # fakedep staged, numpy on the image, absentdist not for py3
    assert not (home / "vllm" / "site" / "fakeengine" / "big.bin").exists()


@pytest.mark.unit
def test_unmet_requirements_are_named_with_who_needs_them(tmp_path):
    site = tmp_path / "site"
    install_wheel(
        fake_wheel(tmp_path, "needy", "1.0", {"needy/__init__.py": b""}, requires=("ghostdist>=1", "numpy<0.1")), site
    )
    missing, conflicts = device.unmet_requirements(site)
    assert missing == ["ghostdist (required by needy)"]
    assert len(conflicts) == 1 and conflicts[0].startswith("numpy ") and "<0.1" in conflicts[0]


@pytest.mark.unit
def test_validate_plan_runs_every_scenario_in_order_and_fits_one_call():
    for engine in ("vllm", "sglang"):
        steps = validate.plan(engine, Path("/r"))
        first = steps[0].argv
        scenarios = [first[i + 1] for i, a in enumerate(first) if a == "--scenario"]
        assert [Path(s).stem for s in scenarios] == [
            "smoke",
            "single",
            "concurrent-1-16-64",
            "long-context",
            "prefix-cache",
            "korean",
        ]
        assert (
            first[first.index("--mode") + 1] == "both" and first[first.index("--model") + 1] == "synthetic:llama-3.1-8b"
        )
        for mode in ("inprocess", "http"):  # one engine start each: always fits a 10-minute call
            assert validate.fits(validate.plan(engine, Path("/r"), mode), 570)
    # both modes in one call (two engine starts): vLLM fits a call of its own, SGLang's slower start does not
    assert validate.fits(validate.plan("vllm", Path("/r")), 570) and not validate.fits(
        validate.plan("vllm", Path("/r")), 500
    )
    assert not validate.fits(validate.plan("sglang", Path("/r")), 570)
    from workloads.scenario_files import load_scenario

    custom = load_scenario(str(validate.CONCURRENT_SCENARIO))  # valid scenario data
    assert custom.name == "concurrent" and custom.concurrency == (1, 16, 64) or custom.concurrency == [1, 16, 64]
    assert [s.name for s in validate.plan("vllm", Path("/r"))][-1] == "anchor-vllm-bench"


@pytest.mark.unit
def test_validate_refuses_a_budget_too_small_for_the_plan(capsys):
    assert validate.main(["--engine", "vllm", "--budget-s", "100"]) == 2
    assert "too small" in capsys.readouterr().err


@pytest.mark.unit
def test_download_asks_for_the_locked_files_own_platform_tags():
    """An index that also offers a manylinux2014 build of apache-tvm-ffi 0.1.10 made pip pick that one and the
    sha256 check refuse it: the download now names the locked file's tags (pure wheels keep the full list)."""
    from tools.gpu.wheelsets import PLATFORMS, Wheel, download_argv

    def platforms(file):
        wheel = Wheel(name="x", version="1", file=file, sha256="0" * 64, bytes=1)
        argv = download_argv("python", wheel, Path("/tmp"))
        return [argv[i + 1] for i, arg in enumerate(argv) if arg == "--platform"]

    assert platforms("apache_tvm_ffi-0.1.10-cp312-abi3-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl") == [
        "manylinux_2_24_x86_64",
        "manylinux_2_28_x86_64",
    ]
    assert platforms("astor-0.8.1-py2.py3-none-any.whl") == list(PLATFORMS)
