#!/usr/bin/env bash
# Run cnet's tests against kernels built with AddressSanitizer and UndefinedBehaviorSanitizer,
# or with ThreadSanitizer.
#
#   scripts/sanitize.sh            the whole test suite
#   scripts/sanitize.sh --fast     a fast subset: the kernel, model, loss, optimizer, trainer,
#                                  file and fuzz tests (what CI runs)
#   scripts/sanitize.sh --thread   ThreadSanitizer instead, over the tests of the step
#                                  runner's team of threads and of concurrent trainers (what
#                                  CI runs too): any data race in cnet's code fails the run
#   scripts/sanitize.sh -- ARGS    extra pytest arguments (e.g. -- -k dense -x)
#
# The extensions are built in a temporary copy of the working tree (scripts/build_copy.sh),
# so the normal in-place build is never touched. The copy's cnet is imported (checked below)
# with the sanitizer's runtime preloaded into Python, which is not built with it. Leak
# detection is off: CPython leaks by design at exit. Any ASan report (heap/stack/global
# buffer overflow, use after free, ...) or UBSan report (misaligned or out-of-range access,
# signed overflow, ...) aborts the process and fails the run; TSan's data-race reports are
# collected and fail it at the end.
# Needs gcc (or a clang whose sanitizer runtimes match); exits non-zero on any failure.
set -euo pipefail

fast=0
thread=0
pytest_args=()
while (($#)); do
    case "$1" in
        --fast) fast=1 ;;
        --thread) thread=1 ;;
        --) shift; pytest_args+=("$@"); break ;;
        *) pytest_args+=("$1") ;;
    esac
    shift
done

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/cnet-sanitize.XXXXXX")"
if [[ -z "${CNET_SANITIZE_KEEP:-}" ]]; then   # CNET_SANITIZE_KEEP=1 keeps the copy to debug
    trap 'rm -rf "$work"' EXIT
fi

if ((thread)); then
    runtime="$(${CC:-gcc} -print-file-name=libtsan.so)"
    flags="-fsanitize=thread -fno-omit-frame-pointer -g"
    marker=__tsan_
else
    runtime="$(${CC:-gcc} -print-file-name=libasan.so)"
    flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
    marker=__asan_
fi
if [[ "$runtime" != /* || ! -e "$runtime" ]]; then
    echo "sanitize.sh: the sanitizer runtime ($(basename "$runtime")) was not found" >&2
    exit 2
fi
# C++ extensions (matplotlib, torch) throw exceptions: ASan's __cxa_throw interceptor needs
# libstdc++ loaded at start-up, or the first throw aborts ("real___cxa_throw != 0").
libstdcxx="$(${CC:-gcc} -print-file-name=libstdc++.so)"
[[ "$libstdcxx" == /* && -e "$libstdcxx" ]] && runtime="$runtime:$libstdcxx"
# The interpreter itself, not a wrapper script: the runtime is preloaded into Python only
# (a shell with ThreadSanitizer preloaded crashes).
python="$("$python" -c 'import sys; print(sys.executable)')"

source "$root/scripts/build_copy.sh"
build_copy "$work" "$flags" "${flags%% *}" || exit 2

export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:${UBSAN_OPTIONS:-}"
# Every report is written to a file and counted at the end. A forked child may start threads
# (the fork test does); CPython, NumPy and OpenBLAS raced in no report, so none is suppressed.
export TSAN_OPTIONS="halt_on_error=0:report_signal_unsafe=0:die_after_fork=0:log_path=$work/tsan:${TSAN_OPTIONS:-}"
export PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONFAULTHANDLER=1
cd "$work"

imported="$(check_imported "$work" "$runtime")" || exit 2
if [[ "$(nm -D "$imported")" != *"$marker"* ]]; then
    echo "sanitize.sh: $imported is not instrumented ($marker)" >&2
    exit 2
fi

if ((thread)); then
    # The exit test's work happens in child processes, as training already covered here;
    # under ThreadSanitizer its four children of the widest model take a minute.
    targets=(tests/test_team.py tests/test_step_runner.py tests/test_concurrency.py
             --deselect "tests/test_concurrency.py::test_exit_while_a_daemon_thread_trains_or_predicts_is_clean")
elif ((fast)); then
    targets=(tests/test_dense.py tests/test_activations.py tests/test_normalization.py
             tests/test_losses.py tests/test_losses_elementwise.py tests/test_optim_kernels.py
             tests/test_model.py tests/test_trainer.py tests/test_io.py tests/test_fuzz.py
             tests/test_concurrency.py tests/test_resume.py tests/test_team.py
             tests/test_step_runner.py)
else
    targets=(tests)
fi
echo "sanitize.sh: running pytest ${targets[*]} ${pytest_args[*]:-}"
# --capture=sys: pytest captures Python's output only, so a sanitizer report (written to
# file descriptor 2 by the aborting process) reaches the log even when the process dies.
set +e
LD_PRELOAD="$runtime${LD_PRELOAD:+:$LD_PRELOAD}" \
    "$python" -m pytest -q -p no:cacheprovider --capture=sys "${targets[@]}" \
    ${pytest_args[@]+"${pytest_args[@]}"} \
    >"$work/pytest.log" 2>&1
status=$?
set -e
cat "$work/pytest.log"
cat "$work"/tsan.* 2>/dev/null || true
reports=$(cat "$work/pytest.log" "$work"/tsan.* 2>/dev/null \
          | grep -c -E "ERROR: AddressSanitizer|runtime error:|WARNING: ThreadSanitizer" || true)
if ((reports)); then
    echo "sanitize.sh: FAILED: $reports sanitizer report(s) above" >&2
    exit 1
fi
if ((status)); then
    echo "sanitize.sh: FAILED (pytest exit status $status)" >&2
    exit "$status"
fi
echo "sanitize.sh: no sanitizer reports"
