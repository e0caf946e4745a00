"""Cross-domain data, protocols (splits) and their checks."""

from crossbench.data.audit import LeakageError, audit_split
from crossbench.data.model import CrossDomainData, Domain
from crossbench.data.protocols import PROTOCOLS, GroundTruth, Split, make_protocol

__all__ = ["PROTOCOLS", "CrossDomainData", "Domain", "GroundTruth", "LeakageError", "Split", "audit_split", "make_protocol"]
