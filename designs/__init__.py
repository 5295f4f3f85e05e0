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
from designs.sample_size import (
    SampleSize,
    design_effect,
    n_clusters,
    n_means,
    n_proportions,
    n_rates,
    n_stepped_wedge,
)

__all__ = [
    "AllocationList",
    "Boundaries",
    "GroupSequentialDesign",
    "HarmBoundary",
    "Minimisation",
    "SampleSize",
    "design_effect",
    "balance_summary",
    "minimisation",
    "n_clusters",
    "n_means",
    "n_proportions",
    "n_rates",
    "n_stepped_wedge",
    "permuted_blocks",
    "record_allocation",
    "simple_randomisation",
    "stratified_block_allocation",
    "stratified_permuted_blocks",
]
