"""The narwhal wheel: the master binary, the worker shim and its extension.

`make wheel` stages the built files next to this script (build/wheel/) and
runs `python3 -m build --no-isolation --wheel` there. `pip install` of the
wheel puts `narwhal` in the environment's bin/, and that narwhal runs its
workers with the environment's own python (see supervisor/install.c).
"""

import os

import shutil

from setuptools import setup
try:
    from setuptools.command.build_scripts import build_scripts
except ImportError:  # setuptools < 62
    from distutils.command.build_scripts import build_scripts
from setuptools.dist import Distribution


class BinaryDistribution(Distribution):
    """It holds a compiled program and extension: a platform wheel."""

    def has_ext_modules(self):
        return True


class CopyProgram(build_scripts):
    """narwhal is an ELF program: copied as it is, not a script to fix."""

    def copy_scripts(self):
        self.mkpath(self.build_dir)
        outfiles = []
        for script in self.scripts:
            out = os.path.join(self.build_dir, os.path.basename(script))
            shutil.copy2(script, out)
            os.chmod(out, 0o755)
            outfiles.append(out)
        return outfiles, outfiles


setup(
    name="narwhal",
    version=os.environ.get("NARWHAL_VERSION", "0.0.0"),
    description="A pre-fork process supervisor for Python web apps (WSGI "
                "and ASGI) whose reloads never make things worse",
    python_requires=">=3.8",
    packages=["narwhal_worker"],
    package_data={"narwhal_worker": ["_http.abi3.so"]},
    scripts=["narwhal"],
    distclass=BinaryDistribution,
    cmdclass={"build_scripts": CopyProgram},
    zip_safe=False,
)
