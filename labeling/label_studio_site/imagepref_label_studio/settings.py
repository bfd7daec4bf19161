"""Label Studio's own settings plus imagepref's guard on local files and export-file clean-up."""

import os

# Label Studio's settings module reads django.conf.settings while it is being imported (its Sentry
# set-up); that nested read must find Label Studio's module, not this one, which is still empty.
# The nested read's settings are replaced by this module's once it is loaded.
_OWN = os.environ.get("DJANGO_SETTINGS_MODULE", __name__)
os.environ["DJANGO_SETTINGS_MODULE"] = "label_studio.core.settings.label_studio"
try:
    from label_studio.core.settings.label_studio import *  # noqa: E402, F403
    from label_studio.core.settings.label_studio import INSTALLED_APPS, MIDDLEWARE  # noqa: E402
finally:
    os.environ["DJANGO_SETTINGS_MODULE"] = _OWN

MIDDLEWARE = [*MIDDLEWARE, "imagepref_label_studio.local_files.LocalFilesGuard"]
INSTALLED_APPS = [*INSTALLED_APPS, "imagepref_label_studio.apps.ImagePrefLabelStudio"]
