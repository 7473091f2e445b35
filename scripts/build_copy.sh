# Sourced by sanitize.sh and isa_check.sh: build cnet's extensions with extra compiler flags
# in a temporary copy of the working tree (tracked and untracked, non-ignored files), so the
# normal in-place build is never touched. Expects $root (the tree) and $python.

# build_copy WORK CFLAGS [LDFLAGS]: copy the tree into WORK and build it there in place.
build_copy() {
    local work="$1" cflags="$2" ldflags="${3:-}"
    echo "$(basename "$0"): copying the tree to $work"
    # Called as `build_copy ... || exit`, the function runs without set -e: each step that
    # can fail says so itself.
    git -C "$root" ls-files -z --cached --others --exclude-standard \
        | tar -C "$root" --null -T - --ignore-failed-read -cf - 2>/dev/null \
        | tar -C "$work" -xf - || return 2
    # The generated C (ignored by git) saves cythonizing again; setup.py regenerates stale
    # files.
    cp -p "$root"/src/cnet/*.c "$work/src/cnet/" 2>/dev/null || true
    rm -rf "$work"/cnet/*.so "$work/build"     # compiled fresh below, with the flags
    # Building in place needs the build requirements, which pip's isolated build did not
    # leave.
    "$python" -c "import Cython, setuptools" 2>/dev/null \
        || "$python" -m pip install -q "Cython>=3.0" "setuptools>=64" wheel || return 2
    echo "$(basename "$0"): building the extensions with ${cflags:-the default flags}"
    (cd "$work" && CFLAGS="$cflags" LDFLAGS="$ldflags" \
        "$python" setup.py -q build_ext --inplace -j "$(nproc 2>/dev/null || echo 2)" \
        >"$work/build.log" 2>&1) || {
        tail -50 "$work/build.log" >&2
        return 2
    }
}

# check_imported WORK [PRELOAD]: the copy's cnet is what Python imports from WORK (with
# PYTHONPATH set to it), not the editable install of the source tree; prints its _dense.
check_imported() {
    local work="$1" preload="${2:-}" imported
    imported="$(cd "$work" && PYTHONPATH="$work" LD_PRELOAD="$preload" \
                "$python" -c 'import cnet, cnet._dense; print(cnet._dense.__file__)')"
    if [[ "$imported" != "$work"/* ]]; then
        echo "$(basename "$0"): the tests would import $imported, not the build in $work" >&2
        return 2
    fi
    echo "$imported"
}
