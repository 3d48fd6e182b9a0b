"""Where the templates, static files and default config are: the one place that knows.

The checkout's top-level `templates/`, `static/` and `config/default.toml` are their only source.
A checkout (and the editable install, which imports the checkout's `service/`) reads them there.
A built wheel carries copies inside the package, in `service/_resources/`: setup.py's build step
puts them there, so an installed service runs from any directory, the checkout nowhere near.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# Only a built package has this directory; it is never made in, nor committed to, the checkout.
SHIPPED = PACKAGE_DIR / "_resources"
CHECKOUT = PACKAGE_DIR.parent

ROOT = SHIPPED if SHIPPED.is_dir() else CHECKOUT

TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
DEFAULT_CONFIG = ROOT / "config" / "default.toml"
