"""`notifyops ses verify-sender`: ask SES to verify NOTIFY_EMAIL_FROM (or an address given).

On real SES this sends a verification email to the address (status Pending until its link is
clicked); on a stand-in (moto, LocalStack) the identity is verified at once. Either way the
command prints the identity's status, so a stopped delivery ("sender not verified") has a fix
that is one command."""

from __future__ import annotations

import typer

from notifyops.console import EXIT_OK, EXIT_PARTIAL, out, print_json

app = typer.Typer(help="Amazon SES set-up.", no_args_is_help=True)


@app.command("verify-sender")
def verify_sender(
    address: str | None = typer.Argument(
        None, help="Sender to verify (default NOTIFY_EMAIL_FROM)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Verify the sender address in SES; exit 1 until SES says it is verified."""
    from email.utils import parseaddr

    from notify.bootstrap import runtime
    from notify.errors import InputError, NotifyError, classify_exception, provider_text
    from notify.senders.base import PROVIDER_EXCEPTIONS
    from notify.validation import normalize_email

    here = runtime()
    given = address or here.settings.email_from
    # `Dispatch <ops@example.com>`: its address; anything else as given (parseaddr read `bad
    # address` as the address `bad`, and the error quoted that)
    sender = parseaddr(given)[1] if "<" in given else given.strip()
    try:
        sender = normalize_email(sender)
    except ValueError as error:
        accepted = "accepted: an address such as ops@example.com"
        raise InputError(f"ADDRESS: {error} ({accepted})") from None
    region = here.settings.aws_region
    try:
        ses = here.aws_client("ses", retries=True)
        ses.verify_email_identity(EmailAddress=sender)
        found = ses.get_identity_verification_attributes(Identities=[sender])
    except PROVIDER_EXCEPTIONS as exc:  # credentials, IAM, region, network: the taxonomy's fix
        failed = classify_exception(exc, written=False)
        raise NotifyError(
            f"SES did not verify {sender} in {region}: {failed.code} ({failed.error_class}): "
            f"{provider_text(failed.message, 120)}; fix: {failed.fix}"
        ) from exc
    status = found["VerificationAttributes"].get(sender, {}).get("VerificationStatus", "Unknown")
    if json_output:
        print_json({"sender": sender, "region": region, "status": status})
    else:
        note = "" if status == "Success" else " (SES emailed a link to the address: click it)"
        out.print(f"{sender} in {region}: {status}{note}")
    raise typer.Exit(EXIT_OK if status == "Success" else EXIT_PARTIAL)
