"""The package as installed: compiled modules, bundled data, and (when testing a wheel) that
the tests import the installed package rather than a source tree.

scripts/build_wheel.sh and cibuildwheel set CNET_EXPECT_INSTALLED=1 when they run the suite
against a wheel; in a development checkout (editable install) those checks are skipped.
"""
import importlib
import importlib.machinery
import os
import pkgutil
import sys
from importlib import resources
from pathlib import Path

import pytest

import cnet

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "src" / "cnet"          # present in a checkout, absent next to a wheel's tests
EXPECT_INSTALLED = os.environ.get("CNET_EXPECT_INSTALLED", "") not in ("", "0")
EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def compiled_modules():
    package_dir = Path(cnet.__file__).parent
    return {info.name for info in pkgutil.iter_modules([str(package_dir)])
            if any(p.name.startswith(info.name + ".") and p.name.endswith(EXTENSION_SUFFIXES)
                   for p in package_dir.glob(info.name + ".*"))}


def test_every_kernel_module_is_compiled_and_imports():
    names = compiled_modules()
    assert {"_dense", "_engine", "_optim"} <= names
    if SOURCE.is_dir():
        assert {p.stem for p in SOURCE.glob("*.pyx")} <= names
    for name in names:
        importlib.import_module(f"cnet.{name}")


def test_bundled_digits_ship_inside_the_package():
    data = resources.files("cnet") / "datasets" / "digits.csv.gz"
    assert data.is_file()
    X, y = cnet.data.load_digits()
    assert X.shape == (1797, 64) and y.shape == (1797,)


def test_the_version_is_the_distribution_version():
    from importlib.metadata import version
    assert cnet.__version__ == version("cnet")


@pytest.mark.skipif(not EXPECT_INSTALLED, reason="only when testing an installed wheel")
def test_cnet_comes_from_the_installed_wheel_not_a_source_tree():
    where = Path(cnet.__file__).resolve()
    assert "site-packages" in where.parts, where
    assert Path(sys.prefix).resolve() in where.parents, (where, sys.prefix)
    assert not SOURCE.exists(), "the tests run next to a source tree"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is new in Python 3.11")
def test_cibuildwheel_copies_everything_the_tests_read():
    import tomllib
    pyproject = HERE.parent / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("no pyproject.toml next to the tests")
    config = tomllib.loads(pyproject.read_text())["tool"]["cibuildwheel"]
    sources = config["test-sources"]
    # tests/test_examples*.py run the scripts in examples/; pytest reads its options from pyproject.
    assert {"tests", "examples", "pyproject.toml"} <= set(sources)
    assert all(f"cp3{minor}-*" in config["build"] for minor in (10, 11, 12, 13))
