"""imagepref's additions to a managed Label Studio, loaded inside the server's own virtual
environment (never by imagepref itself): a settings module that extends Label Studio's own, a
guard on its local-files view, and the removal of export files when their export is deleted.

The server is started with this folder's parent on PYTHONPATH and
``DJANGO_SETTINGS_MODULE=imagepref_label_studio.settings`` (see ``imagepref.labeling.server``).
"""
