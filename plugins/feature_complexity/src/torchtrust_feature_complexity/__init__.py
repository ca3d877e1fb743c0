"""torchtrust plugin: feature complexity by iterative feature merging.

* ``feature_complexity`` (metric): per layer, merge channels that are functionally equivalent up to a
  positive scale while the output changes by less than a tolerance; report the channels that remain
  and the merged model's accuracy ("Going Beyond Neural Network Feature Similarity: The Network
  Feature Complexity and Its Interpretation Using Category Theory").
"""

from toolkit_core import hookimpl

from .merging import FeatureComplexity, MergeReport, merge_features

__all__ = ["FeatureComplexity", "MergeReport", "merge_features"]


@hookimpl
def torchtrust_register_metrics(register):
    register(FeatureComplexity)
