"""The wheel carries the top-level templates/, static/ and config/default.toml inside the package.

They stay where they are in the checkout, their only source; the build copies them into
service/_resources/ of the wheel, where service/resources.py finds them once installed. An
editable install gets no copies: it reads the checkout's own. Everything else about the package
is in pyproject.toml; MANIFEST.in puts the same files in an sdist, so a wheel built from it has
them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
RESOURCES = ("templates", "static", "config/default.toml")
TARGET = Path("service", "_resources")  # service/resources.py's SHIPPED


class build_py_with_resources(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / TARGET
        shutil.rmtree(target, ignore_errors=True)  # nothing left over from an earlier build
        for name in RESOURCES:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, target / name)
            elif source.is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)
            else:
                raise FileNotFoundError(f"{source}: the package ships it, so the build needs it")


setup(cmdclass={"build_py": build_py_with_resources})
