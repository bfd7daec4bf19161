"""Annotator accounts that can log in, made through Label Studio's invite-link sign-up.

Users created through the API have no password and cannot log in, so an account
is made the way a person would: fetch the organisation's invite link with the admin token, then
post the sign-up form with a generated password. Passwords go only into a 0600 file
(`annotators.json` beside the server state), never into output or logs.

The passwords are filed per host, not per URL: a managed server restarted on another port is the
same server with the same accounts (and 127.0.0.1, localhost and ::1 are the same loopback host).
Files written when the key still held the port are read the same way.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from imagepref.errors import BadInputError, ImagePrefError
from imagepref.labeling.connection import LabelStudioConnection
from imagepref.labeling.server import write_private_json

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class AccountError(ImagePrefError):
    """An annotator account could not be created or could not log in."""


@dataclass(frozen=True)
class Invitation:
    """How one person gets in: the login page, and where their password is kept."""

    email: str
    login_url: str
    created: bool
    password_file: Path


def server_key(url: str) -> str:
    """Where a server's passwords are filed: its scheme and host, without the port."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{parts.scheme or 'http'}://{'loopback' if host in _LOOPBACK else host}"


def _load(path: Path) -> dict:
    """The stored passwords by `server_key`; entries of older files (filed by full URL) merged in."""
    stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    merged: dict[str, dict[str, str]] = {}
    for url, people in stored.items():
        known = merged.setdefault(server_key(url), {})
        for email, password in people.items():
            known.setdefault(email, password)
    return merged


def stored_password(credentials_file: Path, url: str, email: str) -> str | None:
    """The password imagepref set for `email` on the server at `url` (any port), if it made that account."""
    return _load(credentials_file).get(server_key(url), {}).get(email.lower())


def _signup(url: str, invite_path: str, email: str, password: str) -> str | None:
    """Post the sign-up form; None on success, else the form's complaint."""
    with httpx.Client(base_url=url, timeout=60.0) as browser:
        browser.get(invite_path).raise_for_status()
        answer = browser.post(
            invite_path,
            data={"email": email, "password": password, "csrfmiddlewaretoken": browser.cookies.get("csrftoken", "")},
            headers={"Referer": url + invite_path},
        )
    if answer.status_code == 302:
        return None
    if "already exists" in answer.text:
        return "exists"
    found = re.search(r'class="[^"]*error[^"]*"[^>]*>\s*([^<]+)', answer.text)
    return found.group(1).strip() if found else f"sign-up answered {answer.status_code}"


def invite(connection: LabelStudioConnection, emails: list[str], credentials_file: Path) -> list[Invitation]:
    """Create a log-in-able account for each e-mail through the invite link (existing ones are kept).

    Returns, per person, the login page and the 0600 file holding the generated password.
    """
    for email in emails:
        if not _EMAIL.match(email):
            raise BadInputError(f"{email!r} is not an e-mail address; annotators sign in with their e-mail")
    invite_path = connection.json("GET", "/api/invite")["invite_url"]
    store = _load(credentials_file)
    known = store.setdefault(server_key(connection.url), {})
    invitations = []
    for email in (address.lower() for address in emails):
        password = known.get(email) or secrets.token_urlsafe(12)
        problem = _signup(connection.url, invite_path, email, password)
        if problem not in (None, "exists"):
            raise AccountError(f"could not create the account {email}: {problem}")
        created = problem is None
        if created:
            known[email] = password
            write_private_json(credentials_file, store)
        invitations.append(Invitation(email, f"{connection.url}/user/login/", created, credentials_file))
    return invitations


def login_token(url: str, email: str, password: str) -> str:
    """Log in through the login form as a person would, and return that account's API token."""
    with httpx.Client(base_url=url, timeout=60.0) as browser:
        browser.get("/user/login/").raise_for_status()
        answer = browser.post(
            "/user/login/",
            data={"email": email, "password": password, "csrfmiddlewaretoken": browser.cookies.get("csrftoken", "")},
            headers={"Referer": url + "/user/login/"},
        )
        if answer.status_code != 302:
            raise AccountError(f"{email} could not log in to {url}; recreate the account with `imagepref label invite`")
        return browser.get("/api/current-user/token").json()["token"]
