"""The one renderer: every file and script the program pushes comes from templates/ through here."""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import jinja2
import yaml

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    undefined=jinja2.StrictUndefined,  # a missing variable is a bug, never an empty string
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
    # Bash uses `{#` (as in ${#array[@]}), so Jinja comments get a delimiter bash never writes.
    comment_start_string="{##",
    comment_end_string="##}",
)


# Quoting for where a value lands, on top of the config's grammars (defence in depth): `sh` makes
# one shell word of it (single quotes where needed), `yaml` a YAML scalar (JSON's string form).
_environment.filters["sh"] = shlex.quote
_environment.filters["yaml"] = json.dumps
# A whole YAML document from validated data (a file a script writes through a quoted here-document).
_environment.filters["to_yaml"] = lambda value: yaml.safe_dump(value, sort_keys=False, default_flow_style=False)


def render(template: str, **context: Any) -> str:
    """Render templates/<template> with the given variables."""
    return _environment.get_template(template).render(**context)
