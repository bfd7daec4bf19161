"""Export files go with their export.

Label Studio 1.23 keeps an export's file (and its converted formats) in `<data>/media/export/`
when the export is deleted: the switch that would remove it is a retired feature flag, fixed off.
Each snapshot holds every annotation with the annotators' e-mails, so the file is removed when
its record is.
"""

from django.apps import AppConfig
from django.db.models.signals import post_delete


class ImagePrefLabelStudio(AppConfig):
    name = "imagepref_label_studio"
    label = "imagepref_label_studio"
    verbose_name = "imagepref"

    def ready(self):
        from data_export.models import ConvertedFormat, Export

        for model in (Export, ConvertedFormat):
            post_delete.connect(_remove_file, sender=model, dispatch_uid=f"imagepref-remove-{model.__name__}")


def _remove_file(sender, instance, **kwargs):
    if instance.file:
        instance.file.delete(save=False)
