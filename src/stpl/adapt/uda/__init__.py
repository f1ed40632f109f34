"""Domain adaptation *with* source data: the unsupervised-domain-adaptation rows of the paper's table (FDA,
PixMatch, RDA; DA-VSN, VAT-VST, TPS), each a Method with `uses_source = True` (engine/method.py): the workflow
gives every step the labelled source pairs beside the target pairs and records `uses_source` in the run.
They are baselines to measure what giving up the source data costs; stpl's own methods never read it.
"""

from stpl.adapt.uda.davsn import UdaDAVSN
from stpl.adapt.uda.fda import FDA
from stpl.adapt.uda.pixmatch import PixMatch
from stpl.adapt.uda.rda import RDA
from stpl.adapt.uda.tps import UdaTPS
from stpl.adapt.uda.vatvst import VATVST

__all__ = ["FDA", "RDA", "VATVST", "PixMatch", "UdaDAVSN", "UdaTPS"]
