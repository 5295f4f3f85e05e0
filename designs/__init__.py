"""Study designs: what the study is (units, allocation, looks). v1: parallel-group RCT."""

from designs.randomisation import stratified_block_allocation

__all__ = ["stratified_block_allocation"]
