"""Settings that are lists of tables: [[name]] in a TOML file, or a JSON array in NAME."""

from __future__ import annotations

import json


def table_list(value: object, setting: str, error: type[ValueError]) -> list[object]:
    """The entries of `setting` as TOML gave them (a list) or as the environment variable's
    JSON array; empty text is no entries. `error` names the setting's own refusal."""
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise error(f"{setting.upper()} is not a JSON array: {exc}") from None
    if not isinstance(value, list | tuple):
        raise error(f"{setting} must be a list of tables")
    return list(value)
