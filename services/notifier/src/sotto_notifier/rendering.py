"""The fixed template catalogue: each template sees only the fields on its allowlist."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, StrictUndefined, meta, select_autoescape

from sotto_notifier.domain import TEMPLATE_FIELDS

FORMATS = ("txt", "html")


class TemplateFieldError(ValueError):
    """A template was given, or refers to, a value outside its allowlist."""


@dataclass(frozen=True)
class RenderedBody:
    text: str
    html: str


class TemplateCatalogue:
    def __init__(self, allowlist: Mapping[str, frozenset[str]] = TEMPLATE_FIELDS) -> None:
        self._allowlist = allowlist
        self._environment = Environment(
            loader=PackageLoader("sotto_notifier", "templates"),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            keep_trailing_newline=True,
            auto_reload=False,  # templates ship with the package: no file check per email
        )
        for template in allowlist:
            for file_format in FORMATS:
                self._check_references(f"{template}.{file_format}.j2")

    @property
    def templates(self) -> frozenset[str]:
        return frozenset(self._allowlist)

    def referenced_fields(self, file_name: str) -> frozenset[str]:
        """Every variable the template file, its layouts and includes read from the caller."""
        found: set[str] = set()
        pending, seen = [file_name], set[str]()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            source = self._environment.loader.get_source(self._environment, name)[0]  # type: ignore[union-attr]
            tree = self._environment.parse(source)
            found |= meta.find_undeclared_variables(tree)
            pending.extend(ref for ref in meta.find_referenced_templates(tree) if ref is not None)
        return frozenset(found)

    def _check_references(self, file_name: str) -> None:
        template = file_name.split(".", 1)[0]
        outside = self.referenced_fields(file_name) - self._allowlist[template]
        if outside:
            raise TemplateFieldError(f"{file_name} refers to fields off its allowlist: {outside}")

    def render(self, template: str, fields: Mapping[str, str]) -> RenderedBody:
        allowed = self._allowlist.get(template)
        if allowed is None:
            raise TemplateFieldError(f"no template named {template!r}")
        if set(fields) != allowed:
            raise TemplateFieldError(
                f"{template} takes exactly {sorted(allowed)}, got {sorted(fields)}"
            )
        values = dict(fields)
        text, html = (
            self._environment.get_template(f"{template}.{file_format}.j2").render(values)
            for file_format in FORMATS
        )
        return RenderedBody(text=text, html=html)
