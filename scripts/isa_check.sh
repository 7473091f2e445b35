#!/usr/bin/env bash
# Run cnet's tests against kernels built for one x86-64 instruction set at a time.
#
#   scripts/isa_check.sh                  every set this CPU can run: x86-64 (baseline SSE2),
#                                         avx2, avx512f
#   scripts/isa_check.sh x86-64 avx2      these only (what CI runs: the main test run covers
#                                         the set the dispatch picks on the machine)
#   scripts/isa_check.sh avx2 -- ARGS     extra pytest arguments (e.g. -- -k sigmoid -x)
#
# With gcc on x86-64 Linux, kernels.h compiles each kernel for AVX-512, AVX2 and baseline
# x86-64 (target_clones) and picks one at load time, so a test run on one machine exercises
# one of the three. Here the extensions are built in a temporary copy of the tree with
# -DCNET_NO_DISPATCH and that set's compiler flag (-march=x86-64, -mavx2 or -mavx512f: what
# the clone's target attribute enables), which makes every kernel that set's code, and the
# whole test suite runs against each build. Such a build tests each set's kernels, not the
# dispatched build's mix of code for different sets; the suite's own tests check that mix
# on the machine that runs them. A set this CPU cannot run is reported and skipped; the run
# fails if it tested none. Exits non-zero on any failure.
set -euo pipefail

sets=()
pytest_args=()
while (($#)); do
    case "$1" in
        --) shift; pytest_args+=("$@"); break ;;
        x86-64|avx2|avx512f) sets+=("$1") ;;
        *) echo "isa_check.sh: unknown instruction set '$1' (x86-64, avx2, avx512f)" >&2
           exit 2 ;;
    esac
    shift
done
((${#sets[@]})) || sets=(x86-64 avx2 avx512f)

root="$(cd "$(dirname "$0")/.." && pwd)"
python="$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')"
if [[ "$(uname -sm)" != "Linux x86_64" ]]; then
    echo "isa_check.sh: the per-set kernels exist on x86-64 Linux only; nothing to check"
    exit 0
fi
source "$root/scripts/build_copy.sh"
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
tested=()
work=""
trap 'rm -rf "$work"' EXIT      # the build of the set being tested, on any exit

for set in "${sets[@]}"; do
    case "$set" in
        x86-64) flag="-march=x86-64" ;;
        *) flag="-m$set" ;;
    esac
    if [[ "$set" != x86-64 && "$cpu_flags" != *" ${set} "* ]]; then
        echo "isa_check.sh: this CPU has no $set; its kernels are not tested here"
        continue
    fi
    work="$(mktemp -d "${TMPDIR:-/tmp}/cnet-isa.XXXXXX")"
    build_copy "$work" "-DCNET_NO_DISPATCH $flag" || exit 2
    check_imported "$work" >/dev/null || exit 2
    # Built without dispatch: no module may still pick a clone at load time (gcc makes each
    # dispatcher an ifunc symbol, type i in nm).
    symbols="$(nm "$work"/cnet/*.so)"
    if awk '$2 == "i" { found = 1 } END { exit !found }' <<<"$symbols"; then
        echo "isa_check.sh: $set: the build still dispatches between clones" >&2
        exit 2
    fi
    echo "isa_check.sh: $set: running the test suite"
    (cd "$work" && PYTHONPATH="$work" "$python" -m pytest -q -p no:cacheprovider tests \
        ${pytest_args[@]+"${pytest_args[@]}"}) || {
        echo "isa_check.sh: FAILED for $set" >&2
        exit 1
    }
    rm -rf "$work"
    tested+=("$set")
done
if ((${#tested[@]} == 0)); then
    echo "isa_check.sh: FAILED: this CPU runs none of ${sets[*]}" >&2
    exit 1
fi
echo "isa_check.sh: passed for ${tested[*]}"
