#!/usr/bin/env bash
# Installs the peer gateways loadbench --peers compares against, into target/bench/peers-venv:
# LiteLLM proxy (PyPI litellm[proxy]) and TensorZero (PyPI tensorzero embeds its gateway); and
# into target/bench/portkey the Portkey gateway (npm @portkey-ai/gateway).
# Versions are pinned: TensorZero's launcher is a private helper.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/bench/peers-venv
if ! "$venv/bin/python" -c "import litellm, tensorzero" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r benches/peers/requirements.txt
fi
portkey=target/bench/portkey
if [ ! -f "$portkey/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
  mkdir -p "$portkey"
  cp benches/peers/portkey/package.json "$portkey/"
  (cd "$portkey" && npm install --no-audit --no-fund --silent)
fi
echo "peers ready: $venv (LiteLLM, TensorZero), $portkey (Portkey)"
