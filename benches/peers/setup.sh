#!/usr/bin/env bash
# Installs the peer gateways loadbench --peers compares against, into target/bench/peers-venv:
# LiteLLM proxy (PyPI litellm[proxy]) and TensorZero (PyPI tensorzero embeds its gateway).
# Versions are pinned: TensorZero's launcher is a private helper.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/bench/peers-venv
if ! "$venv/bin/python" -c "import litellm, tensorzero" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r benches/peers/requirements.txt
fi
echo "peers ready in $venv"
