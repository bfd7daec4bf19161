"""Install, start, stop and check the Label Studio server that imagepref manages.

Label Studio pins its own numpy, Django and SDK versions, so it lives in its own virtual
environment under `$IMAGEPREF_HOME` (default `~/.cache/imagepref`). A managed server keeps its
state in one folder (default `.imagepref/label-studio`): the SQLite data dir, a 0600
`secrets.json` with the admin password, API token and Django secret key, `server.json` with the
pid and port, and the server log. The admin and the token are created through Label Studio's
environment variables on the first start, so no browser step is needed, and every call out
(version check, analytics, Sentry) is switched off. Images are served only from `files_root`,
which must not contain the state folder (the data dir holds the tokens).

The state folder is private: the SQLite database holds every user's API token in plain text, and
export snapshots hold the annotators' e-mails, so the server runs with umask 077 (folders 0700,
files 0600) and each start tightens what an older start left readable. The server loads
imagepref's extension of its settings (``label_studio_site/imagepref_label_studio``): local files
are served only when they are images inside the folder asked for, and an export's file is removed
with the export.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from imagepref.errors import BadInputError, ImagePrefError
from imagepref.files import replaced_on_success
from imagepref.processes import pid_alive

LABEL_STUDIO_SERIES = "1.23"
LABEL_STUDIO_SPEC = f"label-studio=={LABEL_STUDIO_SERIES}.*"
ADMIN_EMAIL = "admin@imagepref.local"
DEFAULT_PORT = 8080
DEFAULT_STATE_DIR = Path(".imagepref/label-studio")
DEFAULT_FILES_ROOT = Path("workspace")
INSTALLED_MARKER = ".imagepref-installed"
# imagepref's additions to Label Studio, imported by the server from its own environment.
LABEL_STUDIO_SITE = Path(__file__).resolve().parent / "label_studio_site"
LABEL_STUDIO_SETTINGS = "imagepref_label_studio.settings"
PRIVATE_UMASK = 0o077
# Label Studio reads these bare names too, so a stray USERNAME in the shell must not
# reach it.
_STRAY_VARIABLES = ("USERNAME", "PASSWORD", "HOST", "PORT", "DEBUG")


class ServerError(ImagePrefError):
    """The Label Studio server could not be installed, started or reached."""


def imagepref_home() -> Path:
    """Where imagepref keeps machine-wide caches: `$IMAGEPREF_HOME` or `~/.cache/imagepref`."""
    return Path(os.environ.get("IMAGEPREF_HOME") or Path.home() / ".cache" / "imagepref")


def label_studio_venv() -> Path:
    """The virtual environment that holds the Label Studio server."""
    return imagepref_home() / "label-studio-venv"


def installed_version() -> str | None:
    """The Label Studio version in imagepref's virtual environment, or None when it is missing."""
    venv = label_studio_venv()
    # The marker is written last, so an interrupted install counts as missing.
    if not (venv / INSTALLED_MARKER).is_file() or not (venv / "bin" / "label-studio").exists():
        return None
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('label-studio'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return (found.stdout.strip() or None) if found.returncode == 0 else None


def install_label_studio(force: bool = False, report: Callable[[str], None] | None = None) -> str:
    """Create or refresh the Label Studio virtual environment; quick when 1.23.x is already there.

    Returns the installed version. An install says so first ("installing Label Studio 1.23
    (once, about 2 minutes)"), then reports pip's progress (``PipProgress``) and the time it took
    through ``report`` (default: stderr, which keeps stdout for results). A marker file is written
    only after pip succeeded, so an interrupted install is redone from scratch on the next call.
    """
    version = installed_version()
    if version and version.startswith(f"{LABEL_STUDIO_SERIES}.") and not force:
        return version
    report = report or _to_stderr
    venv = label_studio_venv()
    report(f"installing Label Studio {LABEL_STUDIO_SERIES} (once, about 2 minutes) into {venv}")
    started = time.monotonic()
    python = shutil.which("python3") or sys.executable
    if not (venv / "bin" / "python").exists() or force:
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        made = subprocess.run([python, "-m", "venv", str(venv)], capture_output=True, text=True, check=False)
        if made.returncode != 0:
            raise ServerError(f"could not create a virtual environment in {venv} ({made.stderr.strip()[-200:]})")
    pip_install(venv / "bin" / "python", [LABEL_STUDIO_SPEC], report)
    (venv / INSTALLED_MARKER).write_text(LABEL_STUDIO_SPEC + "\n", encoding="utf-8")
    version = installed_version() or "unknown"
    report(f"Label Studio {version} installed in {time.monotonic() - started:.0f} s")
    return version


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class PipProgress:
    """Turns pip's output, line by line, into a few lines a person can follow: every ``every``-th
    package collected, each download of 10 MB or more, and the install of the collected packages."""

    def __init__(self, every: int = 10) -> None:
        self.every = every
        self.collected = 0

    def feed(self, line: str) -> str | None:
        """The progress line that ``line`` of pip's output calls for, or None."""
        line = line.rstrip()
        if line.startswith(("Collecting ", "Processing ")):
            self.collected += 1
            if self.collected % self.every == 0:
                return f"  {self.collected} packages collected (latest: {_package_name(line)})"
        elif line.lstrip().startswith("Downloading ") and line.endswith(" MB)"):
            size = float(line.rsplit("(", 1)[1].split()[0])
            if size >= 10:
                return f"  downloading {_package_name(line)} ({size:g} MB)"
        elif line.startswith("Installing collected packages:"):
            count = len(line.split(":", 1)[1].split(","))
            return f"  installing {count} package{'s' if count != 1 else ''}"
        return None


def _package_name(line: str) -> str:
    """The package a ``Collecting``/``Processing``/``Downloading`` line of pip names."""
    what = line.split()[1]
    if what.endswith((".whl", ".tar.gz", ".zip")) or "/" in what:
        return Path(what).name.split("-")[0]  # a file: name-version-...
    return re.split(r"[<>=!~;\[ ]", what, maxsplit=1)[0]


def pip_install(python: Path, requirements: list[str], report: Callable[[str], None]) -> None:
    """``python -m pip install requirements``, reporting its progress as it goes (``PipProgress``);
    a failure is a ``ServerError`` quoting pip's error line."""
    command = [str(python), "-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check"]
    process = subprocess.Popen(
        [*command, *requirements],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    )
    progress, lines = PipProgress(), []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip())
        message = progress.feed(line)
        if message:
            report(message)
    if process.wait() != 0:
        errors = [line for line in lines if line.startswith("ERROR:")] or [line for line in lines if line.strip()]
        errors = errors or ["no output"]
        raise ServerError(
            f"installing {' '.join(requirements)} failed ({errors[-1]}); "
            "check that pip reaches the package index and retry"
        )


@dataclass(frozen=True)
class StatePaths:
    """The files of one managed server's state folder."""

    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def server_file(self) -> Path:
        return self.root / "server.json"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"


@dataclass(frozen=True)
class ServerStatus:
    """What `status` reports: where the server is, whether it answers, and who runs it."""

    url: str
    healthy: bool
    managed: bool
    pid: int | None = None
    files_root: str | None = None


def write_private_json(path: Path, payload: dict) -> None:
    """Write JSON readable only by the owner (0600), through a temp file and a rename."""
    with replaced_on_success(path) as temporary:
        # Created 0600 before anything is written, so the secrets are never readable by others.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=1)


def read_secrets(state_dir: Path) -> dict:
    """The managed server's secrets (admin password, API token, secret key, annotator passwords)."""
    path = StatePaths(state_dir).secrets_file
    if not path.is_file():
        raise ServerError(f"no Label Studio secrets in {state_dir}; run `imagepref label server start` first")
    return json.loads(path.read_text(encoding="utf-8"))


def _ensure_secrets(paths: StatePaths) -> dict:
    if paths.secrets_file.is_file():
        return json.loads(paths.secrets_file.read_text(encoding="utf-8"))
    created = {
        "admin_email": ADMIN_EMAIL,
        "admin_password": secrets.token_urlsafe(18),
        # Label Studio's legacy tokens are 40 hex characters, like Django REST framework's.
        "api_token": secrets.token_hex(20),
        "secret_key": secrets.token_urlsafe(40),
        "annotators": {},
    }
    write_private_json(paths.secrets_file, created)
    return created


def make_private(root: Path) -> None:
    """Make `root` and everything below it readable by the owner only (folders 0700, files 0600).

    Symbolic links are left alone (chmod would change what they point to)."""
    for folder, _folders, files in os.walk(root):
        os.chmod(folder, 0o700)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o600)


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:`port` (Label Studio would silently move on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like the server itself, ignore connections of a stopped server lingering in TIME_WAIT.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def is_healthy(url: str, timeout: float = 3.0) -> bool:
    """True when Label Studio at `url` answers its health check."""
    try:
        answer = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout)
        return answer.status_code == 200 and answer.json().get("status") == "UP"
    except (httpx.HTTPError, ValueError):
        return False


def _server_record(paths: StatePaths) -> dict | None:
    if not paths.server_file.is_file():
        return None
    return json.loads(paths.server_file.read_text(encoding="utf-8"))


def server_environment(secrets_payload: dict, files_root: Path, data_dir: Path) -> dict[str, str]:
    """The environment a managed Label Studio runs with: admin, token, no signup, no calls out."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in _STRAY_VARIABLES and not key.startswith("LABEL_STUDIO_")
    }
    environment.update(
        {
            "LABEL_STUDIO_USERNAME": secrets_payload["admin_email"],
            "LABEL_STUDIO_PASSWORD": secrets_payload["admin_password"],
            "LABEL_STUDIO_USER_TOKEN": secrets_payload["api_token"],
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LOCAL_FILES_SERVING_ENABLED": "true",
            "LOCAL_FILES_DOCUMENT_ROOT": str(files_root),
            "SECRET_KEY": secrets_payload["secret_key"],
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": LABEL_STUDIO_SETTINGS,
            "PYTHONPATH": os.pathsep.join([str(LABEL_STUDIO_SITE), *filter(None, [os.environ.get("PYTHONPATH")])]),
        }
    )
    return environment


def start_server(
    state_dir: Path = DEFAULT_STATE_DIR,
    port: int = DEFAULT_PORT,
    files_root: Path = DEFAULT_FILES_ROOT,
    timeout_s: float = 300.0,
) -> ServerStatus:
    """Start the managed Label Studio on 127.0.0.1:`port` and wait until it answers.

    Installs the server's virtual environment on first use, creates the admin and API token on
    the first start of a fresh data dir, and refuses a busy port instead of letting Label Studio
    drift to the next one. Returns the running server's status; a server already running from
    this state folder is returned as it is.
    """
    paths = StatePaths(state_dir.resolve())
    files_root = files_root.resolve()
    record = _server_record(paths)
    if record and pid_alive(record.get("pid")) and is_healthy(record["url"]):
        return ServerStatus(record["url"], True, True, record["pid"], record.get("files_root"))
    if paths.root == files_root or files_root in paths.root.parents:
        raise BadInputError(
            f"the files root {files_root} contains the server state {paths.root}; "
            "serve images from a folder outside it (--files-root)"
        )
    if not port_is_free(port):
        raise ServerError(f"port {port} on 127.0.0.1 is taken; stop what uses it or pass --port with a free port")
    install_label_studio()
    files_root.mkdir(parents=True, exist_ok=True)
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    make_private(paths.root)
    secrets_payload = _ensure_secrets(paths)
    url = f"http://127.0.0.1:{port}"
    # Created 0600: the log names the annotators who logged in.
    log = os.fdopen(os.open(paths.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    process = subprocess.Popen(
        [
            str(label_studio_venv() / "bin" / "label-studio"),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(paths.data_dir),
        ],
        env=server_environment(secrets_payload, files_root, paths.data_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=paths.root,
        start_new_session=True,
        umask=PRIVATE_UMASK,
    )
    log.close()
    write_private_json(
        paths.server_file,
        {"pid": process.pid, "port": port, "url": url, "files_root": str(files_root), "started_at": time.time()},
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            paths.server_file.unlink(missing_ok=True)
            raise ServerError(
                f"Label Studio exited with status {process.returncode} while starting; see {paths.log_file}"
            )
        if is_healthy(url, timeout=2.0):
            return ServerStatus(url, True, True, process.pid, str(files_root))
        time.sleep(0.5)
    stop_server(state_dir)
    raise ServerError(f"Label Studio did not answer on {url} within {timeout_s:.0f} s; see {paths.log_file}")


def stop_server(state_dir: Path = DEFAULT_STATE_DIR, timeout_s: float = 20.0) -> bool:
    """Stop the managed server (its whole process group); True when one was running."""
    paths = StatePaths(state_dir.resolve())
    record = _server_record(paths)
    if record is None:
        return False
    pid = record.get("pid")
    running = pid_alive(pid)
    if running:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(pid)
    paths.server_file.unlink(missing_ok=True)
    return running


def _reap(pid: int) -> None:
    # A server started by this very process stays a zombie (and "alive" to kill 0) until reaped.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def server_status(state_dir: Path = DEFAULT_STATE_DIR, url: str | None = None) -> ServerStatus:
    """Where the server is and whether it is healthy: an existing deployment when `url` is given,
    otherwise the managed server of `state_dir`."""
    if url:
        return ServerStatus(url.rstrip("/"), is_healthy(url), False)
    paths = StatePaths(state_dir.resolve())
    record = _server_record(paths)
    if record is None:
        raise ServerError(f"no managed Label Studio in {paths.root}; run `imagepref label server start`")
    alive = pid_alive(record.get("pid"))
    return ServerStatus(
        record["url"], alive and is_healthy(record["url"]), True, record.get("pid"), record.get("files_root")
    )
