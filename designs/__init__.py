"""Study designs: what the study is (units, allocation, looks, boundaries, decision rules).

* :mod:`designs.randomisation` and :mod:`designs.minimisation`: allocation lists;
* :mod:`designs.boundaries` (with :mod:`designs.gs_integration`): group-sequential efficacy,
  futility and harm boundaries;
* :mod:`designs.bayes_rules`: Bayesian go / no-go rules;
* :mod:`designs.sample_size`: sample size and power.
"""

from designs.boundaries import Boundaries, GroupSequentialDesign, HarmBoundary
from designs.minimisation import Minimisation, minimisation
from designs.randomisation import (
    AllocationList,
    balance_summary,
    permuted_blocks,
    record_allocation,
    simple_randomisation,
    stratified_block_allocation,
    stratified_permuted_blocks,
)

__all__ = [
    "AllocationList",
    "Boundaries",
    "GroupSequentialDesign",
    "HarmBoundary",
    "Minimisation",
    "balance_summary",
    "minimisation",
    "permuted_blocks",
    "record_allocation",
    "simple_randomisation",
    "stratified_block_allocation",
    "stratified_permuted_blocks",
]
