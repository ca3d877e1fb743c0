"""Contract of the `spectral_product` plugin (numbers are checked in tests/test_generalization_metrics.py)."""

from toolkit_core.catalog import get_info
from toolkit_core.testing import check_method


def test_spectral_product_contract_and_provider():
    check_method("spectral_product")
    info = get_info("spectral_product")
    assert info.provider == "torchtrust-spectral-product"
