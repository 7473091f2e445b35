"""Build the compiled core: every src/cnet/*.pyx becomes an extension module cnet.<name>.

CNET_DEBUG=1 turns bounds checks on (for chasing a kernel bug); the default build trusts
its arguments, because the Python layer in cnet/ has validated them.
CNET_BUILD_ONLY=_dense,_losses rebuilds just those modules (quicker while editing one kernel):
    CNET_BUILD_ONLY=_dense python setup.py build_ext --inplace
The modules compile in parallel, one compiler per core, so `pip install` does too
(`build_ext -j N` chooses otherwise); serially on Windows, where setuptools' parallel
MSVC builds are known to race.
"""
import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("CNET_DEBUG", "") not in ("", "0")
ONLY = [name for name in os.environ.get("CNET_BUILD_ONLY", "").split(",") if name]

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
}

if os.name == "nt":
    compile_args = ["/O2"]
else:
    # -fno-math-errno lets sqrt vectorise; never -ffast-math, which breaks NaN checks.
    # -g0 overrides the -g in Python's own CFLAGS: debug information would make the wheel
    # several times larger. A -g in the CFLAGS environment variable is kept (sanitizer
    # builds, whose reports then name source lines).
    keep_debug_info = any(flag.startswith("-g") and flag != "-g0"
                          for flag in os.environ.get("CFLAGS", "").split())
    compile_args = (["-O0", "-g"] if DEBUG else
                    ["-O3", "-fno-math-errno"] + ([] if keep_debug_info else ["-g0"]))

extensions = [
    Extension(
        f"cnet.{pyx.stem}",
        [str(pyx)],
        include_dirs=["src/cnet"],
        depends=[str(h) for h in Path("src/cnet").glob("*.h")],
        extra_compile_args=compile_args + ([] if os.name == "nt" else ["-pthread"]),
        extra_link_args=[] if os.name == "nt" else ["-pthread"],   # the step runner's team
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for pyx in sorted(Path("src/cnet").glob("*.pyx"))
    if not ONLY or pyx.stem in ONLY
]

setup(
    options={"build_ext": {"parallel": os.name != "nt" and (os.cpu_count() or 1)}},
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives=directives,
    ),
)
