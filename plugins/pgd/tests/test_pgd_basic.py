"""Contract and kernel checks for the pgd plugin."""

from toolkit_core.testing import check_kernel, check_method


def test_contract_linf_and_l2():
    check_method("pgd")
    check_method("pgd", norm="l2", eps=1.0, alpha=0.25, restarts=2)


def test_linf_kernel_matches_reference():
    assert all(row["ok"] for row in check_kernel("torchtrust_pgd::linf_step", "torchtrust_pgd.kernels"))


def test_l2_kernel_matches_reference():
    assert all(row["ok"] for row in check_kernel("torchtrust_pgd::l2_step", "torchtrust_pgd.kernels"))
