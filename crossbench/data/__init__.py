"""Cross-domain data, protocols (splits) and their checks."""

from crossbench.data.model import CrossDomainData, Domain
from crossbench.data.protocols import GroundTruth, Split

__all__ = ["CrossDomainData", "Domain", "GroundTruth", "Split"]
