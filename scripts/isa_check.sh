#!/usr/bin/env bash
# Run cnet's tests against kernels built for one x86-64 instruction set at a time.
#
#   scripts/isa_check.sh                  every set this CPU can run: x86-64 (baseline SSE2),
#                                         x86-64-v3 (AVX2, FMA), x86-64-v4 (AVX-512)
#   scripts/isa_check.sh x86-64 x86-64-v3 these only (what CI runs: the main test run covers
#                                         the set the dispatch picks on the machine)
#   scripts/isa_check.sh x86-64-v3 -- ARGS  extra pytest arguments (e.g. -- -k sigmoid -x)
#
# With gcc 12 or later on x86-64 Linux, kernels.h compiles each kernel for the x86-64 levels
# v4 and v3 and for baseline x86-64 (target_clones) and picks one at load time, so a test run
# on one machine exercises one of the three. Here the extensions are built in a temporary
# copy of the tree with -DCNET_NO_DISPATCH and -march=<set> (what the clone's target
# attribute enables; with older gcc the clones are AVX2 without FMA and baseline, and the
# level builds test code no clone has), which makes every kernel that set's code, and the
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
        x86-64|x86-64-v3|x86-64-v4) sets+=("$1") ;;
        *) echo "isa_check.sh: unknown instruction set '$1' (x86-64, x86-64-v3, x86-64-v4)" >&2
           exit 2 ;;
    esac
    shift
done
((${#sets[@]})) || sets=(x86-64 x86-64-v3 x86-64-v4)

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

# What each level needs, as /proc/cpuinfo names it (abm: LZCNT, on Intel too).
v2="cx16 lahf_lm popcnt pni ssse3 sse4_1 sse4_2"
v3="$v2 avx avx2 fma bmi1 bmi2 f16c movbe abm xsave"
for set in "${sets[@]}"; do
    case "$set" in
        x86-64) needs="" ;;
        x86-64-v3) needs="$v3" ;;
        x86-64-v4) needs="$v3 avx512f avx512bw avx512cd avx512dq avx512vl" ;;
    esac
    missing=""
    for need in $needs; do
        [[ "$cpu_flags" == *" $need "* ]] || missing+=" $need"
    done
    if [[ -n "$missing" ]]; then
        echo "isa_check.sh: this CPU lacks$missing for $set; its kernels are not tested here"
        continue
    fi
    flag="-march=$set"
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
