#!/usr/bin/env bash
# Install Horovod (TensorFlow + Gloo, CPU only) for raymix's `backend: horovod`.
#
# Horovod 0.28.1 (its last release) does not build unpatched against TensorFlow 2.21:
# horovod/tensorflow/xla_mpi_ops.cc includes highwayhash/arch_specific.h, which the TF wheel
# does not ship. We build the sdist with that one (XLA-only) source removed from its
# TensorFlow CMake source list; everything raymix uses (hvd.allreduce,
# DistributedGradientTape, horovod.ray.RayExecutor) works without it.
#
# Idempotent and quick when done: exits at once if `import horovod.tensorflow` works, and
# reuses the wheel built earlier on this machine ($HOROVOD_WHEEL_CACHE) before rebuilding
# (~2.5 min on 2 cores). Usage: bash scripts/install_horovod.sh   (PYTHON=... to pick python)
set -euo pipefail

VERSION="${HOROVOD_VERSION:-0.28.1}"
PYTHON="${PYTHON:-python3}"
CACHE="${HOROVOD_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/raymix/wheels}"

export TF_CPP_MIN_LOG_LEVEL=3 PIP_ROOT_USER_ACTION=ignore
if "$PYTHON" -c "import horovod.tensorflow" >/dev/null 2>&1; then
    echo "install_horovod: horovod.tensorflow already importable; nothing to do"
    exit 0
fi

mkdir -p "$CACHE"
wheel=$(ls "$CACHE"/horovod-"$VERSION"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    echo "install_horovod: building horovod $VERSION from source (a few minutes)"
    command -v cmake >/dev/null || "$PYTHON" -m pip install -q cmake
    "$PYTHON" -m pip download -q --no-deps --no-binary :all: "horovod==$VERSION" -d "$work"
    tar -xzf "$work/horovod-$VERSION.tar.gz" -C "$work"
    src="$work/horovod-$VERSION"
    sed -i '/horovod\/tensorflow\/xla_mpi_ops.cc/d' "$src/horovod/tensorflow/CMakeLists.txt"
    if grep -q xla_mpi_ops "$src/horovod/tensorflow/CMakeLists.txt"; then
        echo "install_horovod: could not patch xla_mpi_ops.cc out of the CMake sources" >&2
        exit 1
    fi
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
        HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS="${MAKEFLAGS:--j2}" \
        "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$src"
    cp "$work"/dist/horovod-"$VERSION"-*.whl "$CACHE/"
    wheel=$(ls "$CACHE"/horovod-"$VERSION"-*.whl | head -n 1)
fi
# Only the runtime requirements Horovod declares for itself; TensorFlow is already here.
"$PYTHON" -m pip install -q --no-deps "$wheel"
"$PYTHON" -m pip install -q cloudpickle psutil pyyaml packaging
"$PYTHON" -c "import horovod.tensorflow" 2>/dev/null
echo "install_horovod: horovod $VERSION installed"
