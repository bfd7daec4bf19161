"""A guard in front of Label Studio's local-files view (`/data/local-files/?d=<path>`).

Label Studio serves any file below its document root whose folder a project's storage covers: it
follows symbolic links (a link in an images folder serves any file on the machine), serves any
type of file, and answers a `../` path with a server error whose body holds absolute paths. This
guard lets a request through only for an image file whose real location lies inside the folder
the request names, reached without leaving the document root; everything else is a bare 404.
A path that does not exist goes on to Label Studio, which checks the login before it answers 404,
so the guard tells nobody which files exist.
"""

import os
import posixpath

from django.conf import settings
from django.http import HttpResponseNotFound
from django.urls import Resolver404, resolve

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}
LOCAL_FILES_VIEW = "localfiles_data"


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def servable(requested: str | None, document_root: str) -> bool:
    """Whether the local-files view may go on with `?d=<requested>` (True for a missing file)."""
    if not requested:
        return True  # Label Studio refuses a request without a path itself
    if "\x00" in requested:
        return False
    relative = posixpath.normpath(requested).lstrip("/")
    if relative == ".." or relative.startswith("../"):
        return False
    if os.path.splitext(relative)[1].lower() not in IMAGE_SUFFIXES:
        return False
    root = os.path.realpath(document_root)
    path = os.path.join(root, relative)
    if not os.path.lexists(path):
        return True
    folder = os.path.dirname(path)
    real_folder, real_path = os.path.realpath(folder), os.path.realpath(path)
    # No linked folder on the way down, and a linked file may point only into its own folder.
    return (
        real_folder == folder
        and _inside(real_path, real_folder)
        and os.path.isfile(real_path)
        and os.access(real_path, os.R_OK)
    )


class LocalFilesGuard:
    """Django middleware: a bare 404 for a local-files request that `servable` refuses."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "local-files" in request.path_info and _is_local_files_view(request.path_info):
            if not servable(request.GET.get("d"), settings.LOCAL_FILES_DOCUMENT_ROOT):
                return HttpResponseNotFound(b"", content_type="text/plain")
        return self.get_response(request)


def _is_local_files_view(path: str) -> bool:
    try:
        return resolve(path).url_name == LOCAL_FILES_VIEW
    except Resolver404:
        return False
