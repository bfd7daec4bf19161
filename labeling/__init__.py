"""Label Studio server and projects, push and pull, agreement, simulated annotators.

The functions below are what the recipe runner calls; `imagepref label ...` is a thin command
line over them. This package imports no torch and none of imagepref's other packages.
"""

from imagepref.labeling.accounts import Invitation, invite
from imagepref.labeling.agreement import agreement_from_folder, agreement_report
from imagepref.labeling.config import LabelingConfig, label_config_xml
from imagepref.labeling.connection import LabelStudioConnection, connect
from imagepref.labeling.project import create_project, find_project
from imagepref.labeling.pull import PullReport, pull
from imagepref.labeling.push import PushReport, push
from imagepref.labeling.server import install_label_studio, server_status, start_server, stop_server
from imagepref.labeling.simulate import Judge, SimulationReport, simulate

__all__ = [
    "Invitation",
    "Judge",
    "LabelStudioConnection",
    "LabelingConfig",
    "PullReport",
    "PushReport",
    "SimulationReport",
    "agreement_from_folder",
    "agreement_report",
    "connect",
    "create_project",
    "find_project",
    "install_label_studio",
    "invite",
    "label_config_xml",
    "pull",
    "push",
    "server_status",
    "simulate",
    "start_server",
    "stop_server",
]
