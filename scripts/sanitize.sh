#!/usr/bin/env bash
# Run cnet's tests against kernels built with AddressSanitizer and UndefinedBehaviorSanitizer.
#
#   scripts/sanitize.sh            the whole test suite
#   scripts/sanitize.sh --fast     a fast subset: the kernel, model, loss, optimizer, trainer,
#                                  file and fuzz tests (what CI runs)
#   scripts/sanitize.sh -- ARGS    extra pytest arguments (e.g. -- -k dense -x)
#
# The extensions are built in a temporary copy of the working tree (tracked and untracked,
# non-ignored files), so the normal in-place build is never touched. The copy's cnet is
# imported (checked below) with the ASan runtime preloaded into Python, which is not built
# with ASan itself. Leak detection is off: CPython leaks by design at exit. Any ASan report
# (heap/stack/global buffer overflow, use after free, ...) or UBSan report (misaligned or
# out-of-range access, signed overflow, ...) aborts the process and fails the run.
# Needs gcc (or a clang whose libasan matches); exits non-zero on any failure.
set -euo pipefail

fast=0
pytest_args=()
while (($#)); do
    case "$1" in
        --fast) fast=1 ;;
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

libasan="$(${CC:-gcc} -print-file-name=libasan.so)"
if [[ "$libasan" != /* || ! -e "$libasan" ]]; then
    echo "sanitize.sh: the AddressSanitizer runtime (libasan.so) was not found" >&2
    exit 2
fi
# C++ extensions (matplotlib, torch) throw exceptions: ASan's __cxa_throw interceptor needs
# libstdc++ loaded at start-up, or the first throw aborts ("real___cxa_throw != 0").
libstdcxx="$(${CC:-gcc} -print-file-name=libstdc++.so)"
[[ "$libstdcxx" == /* && -e "$libstdcxx" ]] && libasan="$libasan:$libstdcxx"

echo "sanitize.sh: copying the tree to $work"
git -C "$root" ls-files -z --cached --others --exclude-standard \
    | tar -C "$root" --null -T - --ignore-failed-read -cf - 2>/dev/null \
    | tar -C "$work" -xf -
# The generated C (ignored by git) saves cythonizing again; setup.py regenerates stale files.
cp -p "$root"/src/cnet/*.c "$work/src/cnet/" 2>/dev/null || true
rm -rf "$work"/cnet/*.so "$work/build"     # compiled fresh below, with the sanitizers

# Building in place needs the build requirements, which pip's isolated build did not leave.
"$python" -c "import Cython, setuptools" 2>/dev/null \
    || "$python" -m pip install -q "Cython>=3.0" "setuptools>=64" wheel

echo "sanitize.sh: building the extensions with -fsanitize=address,undefined"
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
(cd "$work" && CFLAGS="$sanitize" LDFLAGS="-fsanitize=address,undefined" \
    "$python" setup.py -q build_ext --inplace -j "$(nproc 2>/dev/null || echo 2)" \
    >"$work/build.log" 2>&1) || {
    tail -50 "$work/build.log" >&2
    exit 2
}

export LD_PRELOAD="$libasan${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:${UBSAN_OPTIONS:-}"
export PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONFAULTHANDLER=1
cd "$work"

# The tests must import the sanitized copy, not the editable install of the source tree.
imported="$("$python" -c 'import cnet, cnet._dense; print(cnet._dense.__file__)')"
if [[ "$imported" != "$work"/* ]]; then
    echo "sanitize.sh: the tests would import $imported, not the sanitized build" >&2
    exit 2
fi
if [[ "$(nm -D "$imported")" != *__asan_* ]]; then
    echo "sanitize.sh: $imported is not instrumented with ASan" >&2
    exit 2
fi

if ((fast)); then
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
"$python" -m pytest -q -p no:cacheprovider --capture=sys "${targets[@]}" "${pytest_args[@]}" \
    2>&1 | tee "$work/pytest.log"
status=${PIPESTATUS[0]}
set -e
reports=$(grep -c -E "ERROR: AddressSanitizer|runtime error:" "$work/pytest.log" || true)
if ((reports)); then
    echo "sanitize.sh: FAILED: $reports sanitizer report(s) above" >&2
    exit 1
fi
if ((status)); then
    echo "sanitize.sh: FAILED (pytest exit status $status)" >&2
    exit "$status"
fi
echo "sanitize.sh: no AddressSanitizer or UndefinedBehaviorSanitizer errors"
