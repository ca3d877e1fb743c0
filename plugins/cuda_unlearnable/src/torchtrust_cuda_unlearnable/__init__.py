"""torchtrust plugin: CUDA, convolution-based unlearnable data ("CUDA: Convolution-based Unlearnable Datasets").

* ``cuda_unlearnable`` (dataset): the bundled digits whose training images are convolved with
  class-wise random filters; :func:`class_filters` and :func:`apply_filters` poison any image batch.
"""

from toolkit_core import hookimpl

from .filters import apply_filters, class_filters
from .source import CUDAUnlearnableDigits

__all__ = ["CUDAUnlearnableDigits", "apply_filters", "class_filters"]


@hookimpl
def torchtrust_register_datasets(register):
    register(CUDAUnlearnableDigits)
