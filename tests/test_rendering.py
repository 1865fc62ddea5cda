from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String

from notify.db import Notification
from notify.digest import DIGEST_SMS_MAX_PARTS
from notify.errors import InputError, NotifyError
from notify.pricing import SmsEncoding, sms_length
from notify.rendering import (
    CATEGORY_MAX_CHARS,
    NAME_MAX_CHARS,
    SUBJECT_MAX_CHARS,
    BrokenTemplate,
    TemplateCatalog,
    TemplateContextError,
    TemplateSyntaxProblem,
    UnknownTemplateError,
)

SHIPPED = [
    "account_alert",
    "daily_schedule",
    "digest",
    "repair_assigned",
    "repair_completed",
    "repair_rescheduled",
    "test_message",
]
CATALOG = TemplateCatalog()
ASSIGNED = {"repair_id": "TEST-001", "unit_number": "1234"}
FILES = {
    "subject": "subject.txt.j2",
    "text": "body.txt.j2",
    "html": "body.html.j2",
    "sms": "sms.txt.j2",
    "meta": "meta.json",
}
META = {"description": "d", "priority": "normal", "category": "c", "sample_context": {}}


def write_template(root: Path, name: str, **files: Any) -> None:
    """Write the given parts (sources; meta as a dict) of template `name` under `root`."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for part, source in files.items():
        content = json.dumps(source) if part == "meta" else source
        (folder / FILES[part]).write_text(content, encoding="utf-8")


def write_full_template(root: Path, name: str, body: str = "x", **meta: Any) -> None:
    parts = {"subject": body, "text": body, "html": body, "sms": body}
    write_template(root, name, **parts, meta=META | meta)


class TagBalance(HTMLParser):
    VOID = frozenset({"meta", "br", "img", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.unbalanced: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.unbalanced.append(tag)


def test_catalogue_ships_the_field_service_templates() -> None:
    assert CATALOG.names() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_template_renders_its_sample(name: str) -> None:
    info = CATALOG.info(name)
    message = CATALOG.sample(name)
    assert set(info.required_variables) <= set(info.sample_context)
    assert message.subject and "\n" not in message.subject
    assert message.text.strip() and message.sms
    assert (message.priority, message.category) == (info.priority, info.category)


@pytest.mark.parametrize("name", [name for name in SHIPPED if name != "digest"])
def test_shipped_sample_sms_fits_one_gsm7_segment(name: str) -> None:
    length = sms_length(CATALOG.sample(name).sms)
    assert (length.encoding, length.segments) == (SmsEncoding.gsm7, 1)


def test_the_digest_sample_lists_what_fits_and_counts_the_rest() -> None:
    sms = CATALOG.sample("digest").sms
    assert sms.startswith("3 updates from your quiet hours: 1) Repair R-1042 assigned")
    assert sms.endswith("+1 more in the technician portal.")
    assert sms_length(sms).segments <= DIGEST_SMS_MAX_PARTS


def test_templates_may_opt_out_of_digests(tmp_path: Path) -> None:
    write_full_template(tmp_path, "urgent_note", digest=False)
    catalog = TemplateCatalog(tmp_path)
    assert catalog.info("urgent_note").digest is False
    assert catalog.info("repair_assigned").digest is True, "a template without the key joins"
    assert [n for n in SHIPPED if not CATALOG.info(n).digest] == ["account_alert", "digest"]


def test_only_the_deliverers_digest_is_internal_and_an_override_keeps_its_own_meta(
    tmp_path: Path,
) -> None:
    """The digest is made by the deliverer; a user directory's `digest/meta.json` says for itself
    (without the key: a template requests may name), one that changes a part only keeps the
    built-in meta.json, internal."""
    assert [name for name in SHIPPED if CATALOG.info(name).internal] == ["digest"]
    assert CATALOG.is_internal("digest") and not CATALOG.is_internal("no_such_template")
    own, parts_only = tmp_path / "own", tmp_path / "parts_only"
    write_template(own, "digest", meta=META)
    write_template(parts_only, "digest", subject="{{ total }} quiet-hours updates")
    assert TemplateCatalog(own).info("digest").internal is False
    assert not TemplateCatalog(own).is_internal("digest")
    assert TemplateCatalog(parts_only).info("digest").internal is True


def test_fallback_email_is_read_from_meta_alone(tmp_path: Path) -> None:
    """What the deliverer asks of every template: meta.json's flag, no part compiled (a body
    that does not compile still answers; `info`, which compiles, refuses it)."""
    write_full_template(tmp_path, "never_email", body="{% if %}", fallback_email=False)
    write_template(tmp_path, "broken_meta", meta="{not json")
    catalog = TemplateCatalog(tmp_path)
    assert catalog.fallback_email("never_email") is False
    with pytest.raises(TemplateSyntaxProblem):
        catalog.info("never_email")
    with pytest.raises(TemplateSyntaxProblem, match=r"broken_meta/meta\.json"):
        catalog.fallback_email("broken_meta")
    with pytest.raises(UnknownTemplateError):
        catalog.fallback_email("no_such_template")
    assert [catalog.fallback_email(n) for n in SHIPPED] == [
        CATALOG.info(n).fallback_email for n in SHIPPED
    ]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_html_is_a_balanced_document(name: str) -> None:
    html = CATALOG.sample(name).html
    checker = TagBalance()
    checker.feed(html)
    assert html.startswith("<!DOCTYPE html>")
    assert (checker.open, checker.unbalanced) == ([], [])


def test_runbook_example_renders_repair_assigned() -> None:
    message = CATALOG.render("repair_assigned", ASSIGNED)
    assert message.subject == "Repair TEST-001 assigned"
    assert "unit 1234" in message.text and "unit 1234" in message.sms
    assert (message.priority, message.category) == ("high", "repairs")
    assert CATALOG.info("repair_assigned").required_variables == ("repair_id", "unit_number")


def test_daily_schedule_lists_every_job() -> None:
    info = CATALOG.info("daily_schedule")
    message = CATALOG.sample("daily_schedule")
    jobs = info.sample_context["jobs"]
    assert info.required_variables == ("date", "jobs", "technician_name")
    assert message.subject.endswith(f": {len(jobs)} jobs")
    for job in jobs:
        line = f"{job['time']}  unit {job['unit_number']}  {job['address']}"
        assert line in message.text
        assert f">{job['address']}</td>" in message.html


def test_daily_schedule_with_one_job_and_with_none() -> None:
    job = {"time": "09:00", "unit_number": "77", "address": "1 Main St"}
    one = CATALOG.render("daily_schedule", {"technician_name": "Ann", "date": "Tue", "jobs": [job]})
    none = CATALOG.render("daily_schedule", {"technician_name": "Ann", "date": "Tue", "jobs": []})
    assert one.subject == "Your schedule for Tue: 1 job"
    assert none.sms == "No jobs scheduled for Tue yet."
    assert "no jobs scheduled for Tue" in none.text


def test_missing_variable_names_the_template_and_the_variable() -> None:
    with pytest.raises(TemplateContextError) as caught:
        CATALOG.render("repair_assigned", {"repair_id": "TEST-001"})
    assert isinstance(caught.value, InputError)
    assert "template 'repair_assigned' needs variable 'unit_number'" in str(caught.value)
    assert caught.value.missing == ("unit_number",)


def test_all_missing_variables_are_named_at_once() -> None:
    with pytest.raises(TemplateContextError, match="variables 'repair_id', 'unit_number'"):
        CATALOG.check("repair_assigned", {})


def test_missing_field_of_a_list_item_names_it() -> None:
    context = {"technician_name": "Ann", "date": "Tue", "jobs": [{"time": "09:00"}]}
    with pytest.raises(TemplateContextError, match=r"daily_schedule.*has no attribute"):
        CATALOG.render("daily_schedule", context)


def test_value_of_the_wrong_shape_is_a_context_error() -> None:
    with pytest.raises(
        TemplateContextError, match=r"daily_schedule.* cannot render .*subject\.txt\.j2 line 1"
    ):
        CATALOG.render("daily_schedule", {"technician_name": "Ann", "date": "Tue", "jobs": 5})


def test_a_null_value_the_template_prints_is_refused_naming_the_variable(tmp_path: Path) -> None:
    """JSON null used to print as `None`: "unit None" in the SMS a technician got."""
    with pytest.raises(TemplateContextError) as caught:
        CATALOG.check("repair_assigned", {"repair_id": "R-5", "unit_number": None})
    assert str(caught.value).startswith(
        "template 'repair_assigned': variable 'unit_number' is null (at "
    ), str(caught.value)
    context = {"technician_name": "Ann", "date": "Tue", "jobs": [{"time": None}]}
    with pytest.raises(TemplateContextError, match=r"daily_schedule.*a value printed at .* null"):
        CATALOG.render("daily_schedule", context)
    write_full_template(tmp_path, "optional", "{% if note %}{{ note }}{% else %}-{% endif %}")
    optional = TemplateCatalog(tmp_path).render("optional", {"note": None})
    assert optional.sms == "-", "a null the template only tests is fine"


@pytest.mark.parametrize(
    "printed",
    [
        "{{ name|title }}",
        "{{ name|upper }}",
        "{{ 'Hi ' ~ name }}",
        "{{ [name]|join(', ') }}",
        "{{ name|round }}",  # said "type _Null doesn't define __round__ method"
    ],
)
def test_a_null_printed_through_a_filter_or_joined_is_refused_too(
    tmp_path: Path, printed: str
) -> None:
    """Only a null printed as it is was refused: `{{ name|title }}` with a null name texted
    "Hi None" (`|upper`: "Hi NONE")."""
    write_full_template(tmp_path, "greet", f"Hi {printed}")
    with pytest.raises(TemplateContextError, match=r"variable 'name' is null \(at .*greet"):
        TemplateCatalog(tmp_path).render("greet", {"name": None})


def test_a_null_tested_defaulted_or_as_json_is_still_null(tmp_path: Path) -> None:
    body = (
        "{{ 'a' if name is none }}{{ 'b' if name == none }}{{ 'c' if not name }}"
        "{{ name|default('d', true) }}{{ jobs[0].note|default('e', true) }}{{ jobs|tojson }}"
    )
    write_full_template(tmp_path, "tests_null", body)
    message = TemplateCatalog(tmp_path).render(
        "tests_null", {"name": None, "jobs": [{"note": None}]}
    )
    assert message.sms == 'abcde[{"note": null}]'


def test_check_passes_a_complete_context_and_fails_without_a_variable() -> None:
    CATALOG.check("repair_assigned", ASSIGNED)  # a complete context passes
    with pytest.raises(NotifyError, match="unit_number"):
        CATALOG.check("repair_assigned", {"repair_id": "TEST-001"})


def test_unknown_template_lists_the_available_names() -> None:
    with pytest.raises(UnknownTemplateError) as caught:
        CATALOG.render("repair_asigned", ASSIGNED)
    assert "'repair_asigned'" in str(caught.value)
    assert all(name in str(caught.value) for name in SHIPPED)


def test_a_template_without_meta_json_says_so_and_broken_ones_are_not_offered(
    tmp_path: Path,
) -> None:
    """A directory with its parts but no meta.json was "unknown template", and the list of
    available templates offered broken ones."""
    write_template(tmp_path, "nometa", subject="s", text="t", html="h", sms="m")
    write_template(tmp_path, "broken_meta", meta="{not json")
    catalog = TemplateCatalog(tmp_path)
    with pytest.raises(TemplateSyntaxProblem, match=r"'nometa' has no meta\.json"):
        catalog.info("nometa")
    with pytest.raises(UnknownTemplateError) as caught:
        catalog.info("nope")
    offered = str(caught.value).partition("available: ")[2].split(", ")
    assert "broken_meta" not in offered and "repair_assigned" in offered


def test_the_listing_shows_a_template_without_meta_json_as_broken_with_the_same_reason(
    tmp_path: Path,
) -> None:
    """`templates list` left such a directory out, though using it said what was wrong; a
    directory of shared layouts (no part of a template) is still no template."""
    write_template(tmp_path, "nometa", subject="s", text="t", html="h", sms="m")
    (tmp_path / "_shared").mkdir()
    (tmp_path / "_shared" / "email.html.j2").write_text("<html></html>", encoding="utf-8")
    catalog = TemplateCatalog(tmp_path)
    listed = {entry.name: entry for entry in catalog.listing()}
    assert isinstance(listed["nometa"], BrokenTemplate)
    with pytest.raises(TemplateSyntaxProblem) as caught:
        catalog.info("nometa")
    assert listed["nometa"].error == str(caught.value)
    assert "_shared" not in listed and "_layout" not in listed
    assert "nometa" not in catalog.names(), "not offered to send"
    with pytest.raises(UnknownTemplateError):
        catalog.info("_shared")


def test_html_body_escapes_context_and_text_body_does_not() -> None:
    script = "<script>alert(1)</script>"
    message = CATALOG.render("repair_assigned", {"repair_id": script, "unit_number": "1 & 2"})
    assert script not in message.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html
    assert "1 &amp; 2" in message.html
    assert script in message.text and script in message.sms and script in message.subject


def test_context_value_is_never_evaluated_as_a_template() -> None:
    message = CATALOG.render("repair_assigned", {"repair_id": "{{ 7*7 }}", "unit_number": "1"})
    for part in (message.subject, message.text, message.html, message.sms):
        assert "{{ 7*7 }}" in part
        assert "49" not in part


def test_sample_context_is_a_copy() -> None:
    CATALOG.info("repair_assigned").sample_context["unit_number"] = "changed"
    assert "unit 1234" in CATALOG.sample("repair_assigned").sms


def test_user_dir_adds_a_template(tmp_path: Path) -> None:
    write_full_template(tmp_path, "shift_reminder", "Shift at {{ start }}", priority="low")
    catalog = TemplateCatalog(tmp_path)
    message = catalog.render("shift_reminder", {"start": "07:00"})
    assert "shift_reminder" in catalog.names() and "repair_assigned" in catalog.names()
    assert (message.sms, message.priority) == ("Shift at 07:00", "low")
    assert catalog.info("shift_reminder").required_variables == ("start",)


def test_user_dir_overrides_one_file_of_a_built_in(tmp_path: Path) -> None:
    write_template(
        tmp_path, "repair_assigned", sms="New job {{ repair_id }}, unit {{ unit_number }}"
    )
    message = TemplateCatalog(tmp_path).render("repair_assigned", ASSIGNED)
    assert message.sms == "New job TEST-001, unit 1234"
    assert message.subject == "Repair TEST-001 assigned"  # the built-in subject still applies
    assert CATALOG.render("repair_assigned", ASSIGNED).sms != message.sms


def test_user_dir_overrides_a_built_in_meta(tmp_path: Path) -> None:
    write_template(tmp_path, "repair_assigned", meta=META | {"priority": "urgent"})
    assert TemplateCatalog(tmp_path).render("repair_assigned", ASSIGNED).priority == "urgent"


def test_subject_and_sms_are_single_line(tmp_path: Path) -> None:
    write_full_template(tmp_path, "multi", "\n  Line one\nline two  \n")
    message = TemplateCatalog(tmp_path).render("multi", {})
    assert message.subject == "Line one line two"
    assert message.sms == "Line one\nline two"


@pytest.mark.parametrize(
    "expression",
    ["{{ ''.__class__ }}", "{{ ''.__class__.__mro__ }}", "{{ cycler.__init__.__globals__ }}"],
)
def test_sandbox_blocks_attribute_access(tmp_path: Path, expression: str) -> None:
    write_full_template(tmp_path, "evil", f"hello\n{expression}\n")
    with pytest.raises(TemplateSyntaxProblem, match=r"evil/subject\.txt\.j2 line 2: .*unsafe"):
        TemplateCatalog(tmp_path).render("evil", {})


def test_broken_user_template_names_file_and_line(tmp_path: Path) -> None:
    write_full_template(tmp_path, "broken", "ok\n{% if x %}never closed\n")
    with pytest.raises(TemplateSyntaxProblem, match=r"broken/subject\.txt\.j2 line \d"):
        TemplateCatalog(tmp_path).render("broken", {"x": 1})


def test_missing_part_is_named(tmp_path: Path) -> None:
    write_template(tmp_path, "partial", subject="s", text="t", html="h", meta=META)
    with pytest.raises(TemplateSyntaxProblem, match=r"template 'partial' has no sms\.txt\.j2"):
        TemplateCatalog(tmp_path).render("partial", {})


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        (
            {"description": "d", "priority": "normal", "category": "c"},
            "missing key.*sample_context",
        ),
        (META | {"priority": "critical"}, "priority 'critical' is not one of low, normal"),
        (META | {"sample_context": []}, "sample_context must be a JSON object"),
        (META | {"digest": "no"}, "digest must be true or false"),
        (META | {"internal": "yes"}, "internal must be true or false"),
        (META | {"category": "c" * 51}, r"category must be at most 50 characters \(51\)"),
        (META | {"fallback_emial": False}, r"unknown key\(s\) fallback_emial \(the keys are"),
    ],
)
def test_bad_meta_is_reported(tmp_path: Path, meta: dict[str, Any], problem: str) -> None:
    write_full_template(tmp_path, "odd")
    write_template(tmp_path, "odd", meta=meta)
    with pytest.raises(TemplateSyntaxProblem, match=problem):
        TemplateCatalog(tmp_path).info("odd")


def test_meta_that_is_not_json_names_the_line(tmp_path: Path) -> None:
    write_full_template(tmp_path, "odd")
    (tmp_path / "odd" / "meta.json").write_text('{\n  "priority": low\n}', encoding="utf-8")
    with pytest.raises(TemplateSyntaxProblem, match=r"odd/meta\.json line 2"):
        TemplateCatalog(tmp_path).info("odd")


def test_a_meta_json_that_is_not_utf8_breaks_its_template_only(tmp_path: Path) -> None:
    """A meta.json in Latin-1 stopped every send, delivery and receipts poll ("input is not
    UTF-8", naming nothing): the deliverer reads every template's fallback_email. It is now that
    template's problem, named, and the other templates and the fallback policy still work."""
    from notify.fallback import FallbackPolicy

    write_full_template(tmp_path, "latin")
    latin = json.dumps(META | {"description": "café"}, ensure_ascii=False).encode("latin-1")
    (tmp_path / "latin" / "meta.json").write_bytes(latin)
    catalog = TemplateCatalog(tmp_path)
    with pytest.raises(TemplateSyntaxProblem, match=r"latin/meta\.json is not UTF-8"):
        catalog.fallback_email("latin")
    with pytest.raises(TemplateSyntaxProblem, match=r"latin/meta\.json is not UTF-8"):
        catalog.info("latin")
    assert FallbackPolicy.of(catalog).blocked_templates == {"test_message"}  # the built-ins
    assert catalog.render("repair_assigned", catalog.info("repair_assigned").sample_context)
    broken = [t for t in catalog.listing() if isinstance(t, BrokenTemplate)]
    assert [t.name for t in broken] == ["latin"]


def test_an_error_in_a_layout_or_an_include_names_that_file(tmp_path: Path) -> None:
    """A syntax error in a layout said "None line 1", and a missing include did not say which
    file referred to it."""
    (tmp_path / "_layout").mkdir()
    (tmp_path / "_layout" / "mine.txt.j2").write_text("{% block content %}", encoding="utf-8")
    write_full_template(tmp_path, "laid", "{% extends '_layout/mine.txt.j2' %}")
    with pytest.raises(TemplateSyntaxProblem, match=r"_layout/mine\.txt\.j2 line 1"):
        TemplateCatalog(tmp_path).info("laid")
    write_full_template(tmp_path, "inc")
    write_template(tmp_path, "inc", text="{% include 'shared/nothere.txt' %}")
    with pytest.raises(
        TemplateSyntaxProblem,
        match=r"inc/body\.txt\.j2 refers to 'shared/nothere\.txt', which does not exist",
    ):
        TemplateCatalog(tmp_path).info("inc")


def test_missing_user_dir_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="NOTIFY_TEMPLATES_DIR"):
        TemplateCatalog(tmp_path / "nope")


def test_a_layout_that_reads_recipient_makes_the_template_personal(tmp_path: Path) -> None:
    """Dispatch renders once per request unless `recipient` is read, layouts included."""
    from notify.rendering import TemplateCatalog as Catalog

    layouts = tmp_path / "_mine"
    layouts.mkdir()
    (layouts / "base.txt.j2").write_text("Hi {{ recipient.name }},\n{% block body %}{% endblock %}")
    folder = tmp_path / "greeting"
    folder.mkdir()
    (folder / "subject.txt.j2").write_text("Hello")
    (folder / "body.txt.j2").write_text(
        '{% extends "_mine/base.txt.j2" %}{% block body %}job {{ job }}{% endblock %}'
    )
    (folder / "body.html.j2").write_text("<p>job {{ job }}</p>")
    (folder / "sms.txt.j2").write_text("job {{ job }}")
    (folder / "meta.json").write_text(
        '{"description": "d", "priority": "normal", "category": "c", "sample_context": {"job": 1}}'
    )
    info = Catalog(tmp_path).info("greeting")
    assert "recipient" in info.required_variables and "job" in info.required_variables


def test_render_reusing_renders_again_only_the_parts_that_read_what_varies(
    tmp_path: Path,
) -> None:
    """The body greets the recipient through an include; subject, html and SMS do not read
    `recipient`, so a second recipient reuses them (the same strings) and renders the body."""
    (tmp_path / "partly").mkdir()
    (tmp_path / "partly" / "greet.txt.j2").write_text("Hi {{ recipient.name }},")
    write_template(
        tmp_path,
        "partly",
        subject="Job {{ job }}",
        text="{% include 'partly/greet.txt.j2' %}\njob {{ job }}",
        html="<p>{{ job }}</p>",
        sms="job {{ job }}",
        meta=META,
    )
    catalog = TemplateCatalog(extra_dir=tmp_path)
    reads = catalog.part_reads("partly")
    assert [("recipient" in part) for part in reads] == [False, True, False, False]

    def context(name: str) -> dict[str, Any]:
        return {"job": 7, "recipient": {"name": name, "external_id": name}}

    first = catalog.render_reusing("partly", context("Ann"), None, ("recipient",))
    second = catalog.render_reusing("partly", context("Bob"), first, ("recipient",))
    assert second == catalog.render("partly", context("Bob"))
    assert second.text.startswith("Hi Bob,") and first.text.startswith("Hi Ann,")
    assert second.subject is first.subject and second.sms is first.sms


def test_the_longest_category_a_template_may_have_is_what_a_notification_stores() -> None:
    column = Notification.__table__.c.category.type
    assert isinstance(column, String) and column.length == CATEGORY_MAX_CHARS
    name = Notification.__table__.c.template_name.type
    assert isinstance(name, String) and name.length == NAME_MAX_CHARS
    title = Notification.__table__.c.title.type
    assert isinstance(title, String) and title.length == SUBJECT_MAX_CHARS


def test_a_subject_too_long_to_store_is_cut_with_an_ellipsis(tmp_path: Path) -> None:
    write_template(tmp_path, "chatty", subject="{{ s }}", text="t", html="h", sms="m", meta=META)
    catalog = TemplateCatalog(tmp_path)
    assert catalog.render("chatty", {"s": "é" * 300}).subject == "é" * 300
    cut = catalog.render("chatty", {"s": "Repair  R-1 " + "ab " * 200}).subject
    assert len(cut) <= 300 and cut.startswith("Repair R-1 ab ab") and cut.endswith(" ab…")


def test_a_template_name_too_long_to_store_is_refused_with_the_template(tmp_path: Path) -> None:
    write_full_template(tmp_path, "t" * 101)
    with pytest.raises(TemplateSyntaxProblem, match=r"at most 100 characters \(101\)"):
        TemplateCatalog(tmp_path).info("t" * 101)


@pytest.mark.parametrize("snippet", ["row.html", "row", "row.html.j2"])
def test_an_html_snippet_escapes_whatever_its_name(tmp_path: Path, snippet: str) -> None:
    """Jinja escapes by file name, and an included file does not inherit the includer's: a
    snippet `body.html.j2` includes under a name other than `.html.j2` printed `<script>` as
    markup. Only the text parts' files (`.txt.j2`, `.txt`) print values as given."""
    (tmp_path / "_parts").mkdir()
    (tmp_path / "_parts" / snippet).write_text("<p>{{ customer }}</p>", encoding="utf-8")
    (tmp_path / "_parts" / "line.txt").write_text("{{ customer }}", encoding="utf-8")
    write_full_template(tmp_path, "inc", sample_context={"customer": "c"})
    write_template(
        tmp_path,
        "inc",
        html=f'{{% include "_parts/{snippet}" %}}',
        text='{% include "_parts/line.txt" %}',
    )
    message = TemplateCatalog(tmp_path).render("inc", {"customer": "Ann & Bob <script>"})
    assert message.html == "<p>Ann &amp; Bob &lt;script&gt;</p>"
    assert message.text.strip() == "Ann & Bob <script>"


def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path: Path) -> None:
    """Some editors start a file with a UTF-8 byte-order mark: it made the subject start with an
    invisible character and every SMS UCS-2 (twice the parts), and meta.json unreadable."""
    write_full_template(tmp_path, "bom", "Job {{ job }} assigned", sample_context={"job": 7})
    for part in ("subject.txt.j2", "sms.txt.j2", "meta.json"):
        path = tmp_path / "bom" / part
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    message = TemplateCatalog(tmp_path).render("bom", {"job": 7})
    assert message.subject == "Job 7 assigned" and message.sms == "Job 7 assigned"


def test_a_template_that_includes_itself_is_named(tmp_path: Path) -> None:
    """It said `RecursionError: maximum recursion depth exceeded`, naming no template."""
    write_full_template(tmp_path, "rec")
    write_template(tmp_path, "rec", sms='x{% include "rec/sms.txt.j2" %}')
    with pytest.raises(TemplateSyntaxProblem, match=r"'rec': .*sms\.txt\.j2 includes .*itself"):
        TemplateCatalog(tmp_path).render("rec", {})
