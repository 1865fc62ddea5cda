"""The template catalogue: one sandboxed Jinja2 environment, StrictUndefined, autoescape for HTML.

A template is a directory `<name>/` holding `subject.txt.j2`, `body.txt.j2`, `body.html.j2`,
`sms.txt.j2` and `meta.json` (description, priority, category, sample_context; optionally
`"fallback_email": false` when an SMS of it must never be re-sent as email, `"digest": false`
to keep its SMS out of quiet-hours digests, notify.digest, and `"internal": true` for a template
the deliverer makes, which no request may name: the built-in `digest`). A user directory (settings
`templates_dir`, NOTIFY_TEMPLATES_DIR) is searched before the built-in one, file by file, so it
can add templates and override built-ins. Context values are passed as data, never compiled:
`{{ 7*7 }}` in a value stays literal.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    select_autoescape,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from notify.errors import InputError
from notify.pricing import sms_size_problem
from notify.settings import Priority

BUILTIN_DIR = Path(__file__).with_name("templates")
PARTS = ("subject.txt.j2", "body.txt.j2", "body.html.j2", "sms.txt.j2")
TEXT_EXTENSIONS = ("txt.j2", "txt")  # printed as given; every other file is escaped as HTML
HTML_EXTENSIONS = ("html.j2", "html", "htm")  # escaped, as is a file of any other name
META_FILE = "meta.json"
META_KEYS = ("description", "priority", "category", "sample_context")
# Optional keys and their defaults. `fallback_email`: an SMS of this template that fails for good
# (not an opt-out) or is suppressed may be sent as email instead (notify.fallback). `internal`:
# made by the deliverer (the quiet-hours digest), never sent by hand: a request naming it is
# refused and the dispatch form does not offer it; `templates list` and `preview` still show it.
META_OPTIONAL: dict[str, Any] = {"fallback_email": True, "digest": True, "internal": False}
# notifications.category's and template_name's widths (notify/db.py; a test compares): a longer
# one is refused with the template, not by the database when the first request is stored
CATEGORY_MAX_CHARS = 50
NAME_MAX_CHARS = 100
# notifications.title's width: a longer subject is cut here, with an ellipsis, so the preview,
# the stored title, the loop guard's count (by title) and the email's subject are the same text
SUBJECT_MAX_CHARS = 300


class UnknownTemplateError(InputError):
    """No template of that name in the user directory or the built-in catalogue."""


class TemplateContextError(InputError):
    """The context lacks a variable the template uses, or holds a value of the wrong shape."""

    def __init__(self, message: str, *, template_name: str, missing: tuple[str, ...] = ()):
        super().__init__(message)
        self.template_name = template_name
        self.missing = missing


class TemplateSyntaxProblem(InputError):
    """A template is broken: bad syntax, a missing part, a bad meta.json or unsafe code."""


class InternalTemplateError(InputError):
    """A request names a template the deliverer makes (meta.json `"internal": true`)."""


class MessageTooLong(InputError):
    """A rendered message a provider would refuse for its size (an SMS over SNS's 1,600 bytes)."""


@dataclass(frozen=True)
class BrokenTemplate:
    """A template of the catalogue that cannot be used, and why (listed, not raised)."""

    name: str
    error: str


RECIPIENT = "recipient"  # the variable enqueue adds to every context (name, external_id)


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    description: str
    priority: Priority
    category: str
    sample_context: dict[str, Any]
    required_variables: tuple[str, ...]
    fallback_email: bool = True
    digest: bool = True  # a row of this template deferred by quiet hours may join a digest
    internal: bool = False  # made by the deliverer, never sent by hand (refuse_internal)

    @property
    def context_variables(self) -> tuple[str, ...]:
        """The variables a request's context must give: `recipient` is added for each one."""
        return tuple(name for name in self.required_variables if name != RECIPIENT)


@dataclass(frozen=True)
class RenderedMessage:
    template_name: str
    subject: str
    text: str
    html: str
    sms: str
    priority: Priority
    category: str


@dataclass(frozen=True)
class _Compiled:
    info: TemplateInfo
    parts: tuple[Template, ...]  # in the order of PARTS
    reads: tuple[frozenset[str], ...]  # per part: context variables it (or what it includes) reads


def make_environment(loader: BaseLoader) -> SandboxedEnvironment:
    """The one environment: sandboxed, strict, autoescaping every file but the text ones.

    Jinja decides escaping per file, by its name, and a file included from `body.html.j2` does
    not inherit it: an HTML snippet named `row.html` (or with no suffix) must escape on its own.
    Only `.txt.j2` / `.txt` files (subject, text body, SMS and what they include) print values
    as given."""
    env = ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=StrictUndefined,
        finalize=_refuse_null,
        autoescape=select_autoescape(
            enabled_extensions=HTML_EXTENSIONS,
            disabled_extensions=TEXT_EXTENSIONS,
            default_for_string=False,
            default=True,
        ),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    # a context's nulls are NULL (see _Null): `is none` and `tojson` see them as null still
    env.tests["none"] = _is_null
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "default": _null_as_json}
    return env


class TemplateCatalog:
    """Built-in templates plus those of `extra_dir`, compiled once per name and cached."""

    def __init__(self, extra_dir: Path | None = None) -> None:
        # utf-8-sig: a byte-order mark some editors write is not text (it made the subject start
        # with an invisible character and every SMS UCS-2, and meta.json unreadable)
        self._loader = ChoiceLoader(
            [FileSystemLoader(d, encoding="utf-8-sig") for d in _search_path(extra_dir)]
        )
        self._env = make_environment(self._loader)
        self._compiled: dict[str, _Compiled] = {}

    def names(self) -> list[str]:
        found = self._env.list_templates(filter_func=_is_meta_file)
        return sorted({path.split("/")[0] for path in found})

    def info(self, name: str) -> TemplateInfo:
        info = self._get(name).info
        return replace(info, sample_context=copy.deepcopy(info.sample_context))

    def fallback_email(self, name: str) -> bool:
        """meta.json's `fallback_email`, read without compiling the template's parts (the
        deliverer asks it of every template once per process: compiling them all cost ~0.15 s).
        TemplateSyntaxProblem when meta.json is broken, like `info`."""
        compiled = self._compiled.get(name)
        if compiled is not None:
            return compiled.info.fallback_email
        try:
            return self._read_meta(name, required=()).fallback_email
        except TemplateNotFound:
            return self.info(name).fallback_email  # the unknown-template error, named

    def is_internal(self, name: str) -> bool:
        """meta.json's `internal`, read without compiling the template's parts; False for a
        template that is unknown or broken (the checks that name what is wrong with it follow)."""
        compiled = self._compiled.get(name)
        if compiled is not None:
            return compiled.info.internal
        try:
            return self._read_meta(name, required=()).internal
        except (TemplateNotFound, InputError):
            return False

    def refuse_internal(self, name: str) -> None:
        """InternalTemplateError when a request names an internal template (the deliverer's
        `digest`): it is made from the messages quiet hours held back, never sent by hand."""
        if self.is_internal(name):
            raise InternalTemplateError(internal_refusal(name))

    def render(self, name: str, context: Mapping[str, Any]) -> RenderedMessage:
        return self.render_reusing(name, context, None, ())

    def render_reusing(
        self,
        name: str,
        context: Mapping[str, Any],
        earlier: RenderedMessage | None,
        varying: Iterable[str],
    ) -> RenderedMessage:
        """`render`, except that the parts that read none of the `varying` variables are taken
        from `earlier` (rendered from a context that differs only in those variables): a request
        to many recipients renders its subject once when only the body names the recipient.
        The parts taken are the same string objects as in `earlier`."""
        compiled = self._get(name)
        values = _nulls_marked(dict(context))
        changed = frozenset(varying)
        previous = _parts_of(earlier) if earlier is not None else None
        rendered = [
            previous[n]
            if previous is not None and not (reads & changed)
            else _finish(n, _render(compiled.info, template, values))
            for n, (template, reads) in enumerate(zip(compiled.parts, compiled.reads, strict=True))
        ]
        subject, text, html, sms = rendered
        return RenderedMessage(
            template_name=name,
            subject=subject,
            text=text,
            html=html,
            sms=sms,
            priority=compiled.info.priority,
            category=compiled.info.category,
        )

    def listing(self) -> list[TemplateInfo | BrokenTemplate]:
        """Every template's info; a broken one as a BrokenTemplate so the others still list,
        a directory with parts but no meta.json too (it is not in `names`)."""
        found: list[TemplateInfo | BrokenTemplate] = []
        for name in sorted({*self.names(), *self._without_meta()}):
            try:
                found.append(self.info(name))
            except InputError as problem:
                found.append(BrokenTemplate(name=name, error=str(problem)))
        return found

    def part_reads(self, name: str) -> tuple[frozenset[str], ...]:
        """Per part (in the order of PARTS), the context variables it reads, includes followed."""
        return self._get(name).reads

    def check(self, name: str, context: Mapping[str, Any]) -> None:
        """Raise the error `render` would raise, or MessageTooLong when the rendered SMS is more
        than SNS accepts (so a request is refused before anything is stored)."""
        message = self.render(name, context)
        problem = sms_size_problem(message.sms)
        if problem:
            raise MessageTooLong(f"template {name!r}: {problem}; shorten the context values")

    def sample(self, name: str) -> RenderedMessage:
        return self.render(name, self._get(name).info.sample_context)

    def _get(self, name: str) -> _Compiled:
        compiled = self._compiled.get(name)
        if compiled is None:
            compiled = self._compiled[name] = self._compile(name)
        return compiled

    def _not_a_template(self, name: str) -> InputError:
        """A directory with parts but no meta.json is a broken template, said so; otherwise the
        name is unknown, and the templates that work are listed."""
        if name in self._without_meta():
            return TemplateSyntaxProblem(
                f"template {name!r} has no {META_FILE} (description, priority, category, "
                "sample_context): add one beside its parts"
            )
        usable = [t.name for t in self.listing() if isinstance(t, TemplateInfo)]
        shown = name if len(name) <= 60 else f"{name[:60]}…"
        return UnknownTemplateError(
            f"unknown template {shown!r}; available: {', '.join(usable) or 'none'}"
        )

    def _without_meta(self) -> set[str]:
        """Directories holding a template part (subject.txt.j2, ...) but no meta.json; a
        directory of shared layouts (`_layout/`) holds no part and is none of them."""
        found = self._env.list_templates(
            filter_func=lambda path: path.count("/") == 1 and path.split("/")[1] in PARTS
        )
        return {path.split("/")[0] for path in found} - set(self.names())

    def _compile(self, name: str) -> _Compiled:
        if name not in self.names():
            raise self._not_a_template(name)
        parts = tuple(self._load_part(name, part) for part in PARTS)
        try:
            reads = tuple(_undeclared(self._env, self._loader, [f"{name}/{p}"]) for p in PARTS)
            required = tuple(sorted(frozenset().union(*reads)))
            info = self._read_meta(name, required)
        except TemplateSyntaxError as exc:
            raise TemplateSyntaxProblem(f"{exc.filename} line {exc.lineno}: {exc.message}") from exc
        except TemplateNotFound as exc:
            raise TemplateSyntaxProblem(
                f"template {name!r} refers to {exc.name!r}, which does not exist"
            ) from exc
        except UnicodeDecodeError as exc:
            raise TemplateSyntaxProblem(
                f"template {name!r} has a file that is not UTF-8 ({exc.reason})"
            ) from exc
        return _Compiled(info=info, parts=parts, reads=reads)

    def _load_part(self, name: str, part: str) -> Template:
        try:
            return self._env.get_template(f"{name}/{part}")
        except TemplateNotFound as exc:
            needed = ", ".join((*PARTS, META_FILE))
            raise TemplateSyntaxProblem(
                f"template {name!r} has no {part}; a template directory needs {needed}"
            ) from exc
        except TemplateSyntaxError as exc:
            raise TemplateSyntaxProblem(f"{exc.filename} line {exc.lineno}: {exc.message}") from exc
        except UnicodeDecodeError as exc:
            raise TemplateSyntaxProblem(f"{name}/{part} is not UTF-8 ({exc.reason})") from exc

    def _read_meta(self, name: str, required: tuple[str, ...]) -> TemplateInfo:
        path = f"{name}/{META_FILE}"
        try:
            source, filename, _ = self._loader.get_source(self._env, path)
        except UnicodeDecodeError as exc:  # a broken template, as a meta.json that is not JSON
            raise TemplateSyntaxProblem(f"{path} is not UTF-8 ({exc.reason})") from exc
        if len(name) > NAME_MAX_CHARS:
            raise TemplateSyntaxProblem(
                f"template {name[:60]}…: a template's name (its directory's) is at most "
                f"{NAME_MAX_CHARS} characters ({len(name)})"
            )
        fields = _parse_meta(source, filename or META_FILE)
        return TemplateInfo(name=name, **fields, required_variables=required)


def internal_refusal(name: str) -> str:
    """Why a request may not name this internal template (enqueue's and the dispatch form's)."""
    return (
        f"template {name!r} is internal: the deliverer makes it, it is not sent by hand "
        '(its meta.json says "internal": true; `notifyops templates preview` shows it)'
    )


def _search_path(extra_dir: Path | None) -> list[Path]:
    if extra_dir is None:
        return [BUILTIN_DIR]
    if not extra_dir.is_dir():
        raise InputError(
            f"templates directory {extra_dir} is not a directory "
            "(NOTIFY_TEMPLATES_DIR: a folder of <name>/ template directories)"
        )
    return [extra_dir, BUILTIN_DIR]


def _is_meta_file(path: str) -> bool:
    return path.count("/") == 1 and path.endswith(f"/{META_FILE}")


def _parts_of(message: RenderedMessage) -> tuple[str, str, str, str]:
    return message.subject, message.text, message.html, message.sms


def _finish(part: int, rendered: str) -> str:
    """The clean-up each part gets (in the order of PARTS): subject on one line of at most
    SUBJECT_MAX_CHARS, text ending in one newline, html as is, sms stripped."""
    if part == 0:
        subject = " ".join(rendered.split())
        if len(subject) <= SUBJECT_MAX_CHARS:
            return subject
        return subject[: SUBJECT_MAX_CHARS - 1].rstrip() + "…"
    if part == 1:
        return rendered.rstrip() + "\n"
    return rendered.strip() if part == 3 else rendered


def _undeclared(env: SandboxedEnvironment, loader: BaseLoader, paths: list[str]) -> frozenset[str]:
    """Variables these template files read from the context, including the layouts and
    includes they reference (Jinja globals such as `range` excluded)."""
    found: set[str] = set()
    pending: list[tuple[str, str | None]] = [(path, None) for path in paths]  # (file, referrer)
    seen = set()
    while pending:
        path, referrer = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        ast = env.parse(*_source(env, loader, path, referrer))
        found |= meta.find_undeclared_variables(ast)
        pending += [(ref, path) for ref in meta.find_referenced_templates(ast) if ref]
    return frozenset(found - set(env.globals))


def _source(
    env: SandboxedEnvironment, loader: BaseLoader, path: str, referrer: str | None
) -> tuple[str, str, str | None]:
    """A template file's (source, name, filename) for `env.parse`, so a syntax error names the
    file it is in (a layout or an include, not only a part); a file that is missing or not UTF-8
    is named with the file that refers to it."""
    try:
        source, filename, _ = loader.get_source(env, path)
    except TemplateNotFound as exc:
        if referrer is None:
            raise
        raise TemplateSyntaxProblem(f"{referrer} refers to {path!r}, which does not exist") from exc
    except UnicodeDecodeError as exc:
        raise TemplateSyntaxProblem(f"{path} is not UTF-8 ({exc.reason})") from exc
    return source, path, filename


def _parse_meta(source: str, filename: str) -> dict[str, Any]:
    try:
        data = json.loads(source)
    except json.JSONDecodeError as exc:
        raise TemplateSyntaxProblem(f"{filename} line {exc.lineno}: {exc.msg}") from exc
    problem = _meta_problem(data)
    if problem:
        raise TemplateSyntaxProblem(f"{filename}: {problem}")
    fields = {key: data[key] for key in META_KEYS}
    optional = {key: data.get(key, default) for key, default in META_OPTIONAL.items()}
    return fields | optional | {"priority": Priority(data["priority"])}


def _meta_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"must be a JSON object with the keys {', '.join(META_KEYS)}"
    missing = [key for key in META_KEYS if key not in data]
    if missing:
        return f"missing key(s) {', '.join(missing)}"
    unknown = sorted(set(data) - set(META_KEYS) - set(META_OPTIONAL))
    if unknown:  # a misspelt optional key (fallback_emial) would leave its default in force
        known = ", ".join([*META_KEYS, *META_OPTIONAL])
        return f"unknown key(s) {', '.join(unknown)} (the keys are {known})"
    not_text = [key for key in ("description", "priority", "category") if not _is_text(data[key])]
    if not_text:
        return f"{', '.join(not_text)} must be text"
    if len(data["category"]) > CATEGORY_MAX_CHARS:
        return f"category must be at most {CATEGORY_MAX_CHARS} characters ({len(data['category'])})"
    if data["priority"] not in list(Priority):
        return f"priority {data['priority']!r} is not one of {', '.join(Priority)}"
    if not isinstance(data["sample_context"], dict):
        return "sample_context must be a JSON object (variable name -> value)"
    if not isinstance(data.get("fallback_email", True), bool):
        return "fallback_email must be true or false"
    if not isinstance(data.get("digest", True), bool):
        return "digest must be true or false (false: never carried by a quiet-hours digest)"
    if not isinstance(data.get("internal", False), bool):
        return "internal must be true or false (true: made by the deliverer, never sent by hand)"
    return None


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _render(info: TemplateInfo, template: Template, values: dict[str, Any]) -> str:
    try:
        return template.render(values)
    except SecurityError as exc:
        where = _location(exc, template)
        raise TemplateSyntaxProblem(
            f"{where}: {str(exc).rstrip('.')} (templates run in a sandbox)"
        ) from exc
    except UndefinedError as exc:
        raise _context_error(info, values, exc, _location(exc, template)) from exc
    except TemplateError as exc:
        raise TemplateSyntaxProblem(f"{_location(exc, template)}: {exc}") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise _context_error(info, values, exc, _location(exc, template)) from exc
    except RecursionError:  # an include or a macro that calls itself without end
        raise TemplateSyntaxProblem(
            f"template {info.name!r}: {template.name or template.filename} includes (or calls) "
            "itself without end"
        ) from None


class _NullPrinted(ValueError):
    """A template printed a null value (JSON null, Python None)."""


def _refuse_null(value: Any) -> Any:
    """What every `{{ ... }}` prints, checked: a null would print as `None` in the message, so it
    is an error at request time, like a missing variable (a null the template only tests, as in
    `{% if jobs %}`, is fine)."""
    if value is None or value is NULL:
        raise _NullPrinted("null")
    return value


class _Null:
    """A context's null as templates see it: false, equal to `none`, `is none`, but never text.
    A plain None printed through a filter or joined (`{{ name|title }}`, `{{ "Hi " ~ name }}`)
    came out as `None`/`NONE` where `{{ name }}` was refused; this one refuses to become text
    however it is printed."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return other is None or other is self

    def __hash__(self) -> int:
        return hash(None)

    def __str__(self) -> str:
        raise _NullPrinted("null")

    def __html__(self) -> str:
        raise _NullPrinted("null")

    def __repr__(self) -> str:
        return "None"


NULL = _Null()


def _is_null(value: Any) -> bool:
    return value is None or value is NULL


def _null_as_json(value: Any) -> Any:
    if value is NULL:
        return None
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _nulls_marked(value: Any) -> Any:
    """`value` with every None inside its dicts and lists replaced by NULL (the same objects
    where there is none)."""
    if value is None:
        return NULL
    if isinstance(value, dict):
        marked = {key: _nulls_marked(item) for key, item in value.items()}
        same = all(marked[key] is item for key, item in value.items())
        return value if same else marked
    if isinstance(value, list | tuple):
        items = [_nulls_marked(item) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return type(value)(items) if isinstance(value, tuple) else items
    return value


def _context_error(
    info: TemplateInfo, values: Mapping[str, Any], exc: Exception, where: str
) -> TemplateContextError:
    missing = tuple(name for name in info.required_variables if name not in values)
    nulls = tuple(name for name in info.required_variables if _is_null(values.get(name, 0)))
    if missing:
        noun = "variable" if len(missing) == 1 else "variables"
        message = (
            f"template {info.name!r} needs {noun} {_quoted(missing)} (missing from the context)"
        )
    elif (isinstance(exc, _NullPrinted) or _Null.__name__ in str(exc)) and nulls:
        noun = "variable" if len(nulls) == 1 else "variables"
        verb = "is" if len(nulls) == 1 else "are"
        use = "would print as None" if isinstance(exc, _NullPrinted) else f"cannot be used: {exc}"
        message = f"template {info.name!r}: {noun} {_quoted(nulls)} {verb} null (at {where}), "
        message += f"which {use}; give a value"
    elif isinstance(exc, _NullPrinted):
        message = (
            f"template {info.name!r}: a value printed at {where} is null, which would print as "
            "None: give a value"
        )
    else:
        message = f"template {info.name!r} cannot render {where} with this context: {exc}"
    return TemplateContextError(message, template_name=info.name, missing=missing)


def _location(exc: BaseException, template: Template) -> str:
    """`file line N` of the innermost template frame of the traceback (Jinja rewrites it)."""
    where = template.filename or str(template.name)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".j2"):
            where = f"{tb.tb_frame.f_code.co_filename} line {tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)
