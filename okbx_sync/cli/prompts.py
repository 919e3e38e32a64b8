"""The questions `okbx init` asks: an answer checked and asked again, a pick from a list, and a
flag's value checked against what the accounts offer."""

from __future__ import annotations

from collections.abc import Callable

import typer


def ask(label: str, *, default: str | None = None, hide: bool = False, check: Callable[[str], str | None]) -> str:
    """Prompt until `check` accepts the answer (it returns a problem or None); a bad answer is asked again."""
    while True:
        answer = str(typer.prompt(label, default=default, hide_input=hide, show_default=not hide)).strip()
        problem = check(answer)
        if problem is None:
            return answer
        typer.echo(f"  {problem}; try again")


def pick(label: str, options: list[tuple[str, str]], default: str | None = None) -> str:
    """One value from a discovered list, interactively: a number or a code, Enter for the default."""
    codes = [code for code, _ in options]
    for number, (code, name) in enumerate(options, 1):
        typer.echo(f"  {number}. {name} [{code}]")

    def check(answer: str) -> str | None:
        if answer in codes or (answer.isdigit() and 1 <= int(answer) <= len(options)):
            return None
        return f"{answer!r} is not in the list: pick a number or a code"

    answer = ask(label, default=default if default in codes else None, check=check)
    return answer if answer in codes else options[int(answer) - 1][0]


def url_problem(what: str) -> Callable[[str], str | None]:
    from ..config import insecure_http_problem

    def check(answer: str) -> str | None:
        import re

        if what == "webhook" and not re.match(r"^https?://[^/\s]+/rest/\d+/[^/\s?#]+/?$", answer):
            return "the webhook URL must look like https://<portal>/rest/<user id>/<secret>/"
        if what == "okdesk" and not re.match(r"^https?://[^/\s]+", answer):
            return "the Okdesk URL must look like https://yourcompany.okdesk.ru"
        problem = insecure_http_problem(answer)
        return problem.replace("in this section", "in okbx.yaml") if problem else None

    return check


def nonempty(answer: str) -> str | None:
    return None if answer else "an answer is needed"


def choose(
    flag: str,
    label: str,
    options: list[tuple[str, str]],
    given: str | None,
    *,
    default: str | None,
    interactive: bool,
    problems: list[str],
) -> str:
    """A flag's value checked against what the accounts offer; asked for when interactive, else
    every missing or wrong flag is collected in `problems` and reported together."""
    codes = [code for code, _ in options]
    if given in codes:
        return str(given)
    shown = ", ".join(f"{code} ({name})" if name != code else code for code, name in options[:15])
    shown += ", …" if len(options) > 15 else ""
    if given is None and default in codes and not interactive:
        return str(default)
    problem = (
        f"{flag} {given!r} is not one of: {shown or '(none found)'}"
        if given is not None
        else f"{flag} is missing; one of: {shown or '(none found)'}"
    )
    if not interactive:
        problems.append(problem)
        return ""
    if given is not None:
        typer.echo(f"  {problem}")
    return pick(label, options, default)
