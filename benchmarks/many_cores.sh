#!/usr/bin/env bash
# Goal 7 of issue 11: frames/s as cores grow, N = 1..64 envs and 1..8 encoders,
# prepared to run in ONE call on the device machine (16 cores; a session has about
# 15 minutes of its time, a command at most 10), or on any many-core Linux box.
#
# On the device machine (its image has numpy, opencv, pillow, psutil, tqdm, not
# gymnasium, PyAV, multiprocess or pygame; nothing there reaches the network):
#   here, once:   bash benchmarks/many_cores.sh --fetch-wheels      # ~47 MB into .whl/
#   there:        run(command="bash benchmarks/many_cores.sh", carry=[".whl"], timeout_s=590)
#                 -> $OUT/bench-many-cores.json, .png and .log come back
# Anywhere else:  bash benchmarks/many_cores.sh [OUT_DIR]
#
# Sized for 16 cores to end in about 6 minutes: CartPole-v1, 4000 env-steps a
# run, one repeat, variants none / render / every frame with 1, 2, 4 and 8
# encoders. NS, ENCODERS, FRAMES, REPEATS and ENV override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    grep -qs '^/.whl/$' .git/info/exclude || { mkdir -p .git/info; echo /.whl/ >>.git/info/exclude; }
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl \
        gymnasium==1.4.0 farama-notifications==0.0.4 av==18.1.0 multiprocess==0.70.19 \
        dill==0.4.1 pygame-ce==2.5.8
    du -sh .whl
    exit 0
fi

out="${OUT:-${1:-many-cores}}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/rlcapture-site .whl/*.whl
    export PYTHONPATH="/tmp/rlcapture-site:$PWD"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1

{
    echo "== $(date -u +%FT%TZ) $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    # shellcheck disable=SC2086 # NS and ENCODERS are lists
    python3 -m rlcapture.cli bench "${ENV:-CartPole-v1}" \
        -n ${NS:-1 2 4 8 16 32 64} --encoders ${ENCODERS:-1 2 4 8} \
        --variants none,render,all --repeats "${REPEATS:-1}" --frames "${FRAMES:-4000}" \
        --timeout 240 --json "$out/bench-many-cores.json" --png "$out/bench-many-cores.png"
} 2>&1 | tee "$out/bench-many-cores.log"
