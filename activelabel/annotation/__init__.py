"""Who labels: simulated annotators (oracle) and, later, Label Studio, behind one protocol."""

from activelabel.annotation.base import Annotator, LabelAnswer, TaskRequest
from activelabel.annotation.simulated import OracleAnnotator

__all__ = ["Annotator", "LabelAnswer", "OracleAnnotator", "TaskRequest"]
