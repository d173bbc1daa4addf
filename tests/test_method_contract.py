"""The contract every registered method passes (methods/contract.py); plugins can run the same checks."""

from __future__ import annotations

import pytest

from smoacs_bench.methods import METHODS, get_method_class
from smoacs_bench.methods.contract import check_declarations, check_failures_carry_reasons, check_method


@pytest.mark.parametrize("name", sorted(METHODS))
def test_declarations(name):
    check_declarations(get_method_class(name))  # model-free


@pytest.mark.usefixtures("model_dir")
@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_contract(name):
    props = check_method(get_method_class(name))
    assert any(not p.failed for p in props)


@pytest.mark.usefixtures("model_dir")
@pytest.mark.parametrize("name", ["smoacs", "tpe", "ftcp", "reference"])
def test_failed_samples_carry_a_reason(name):
    check_failures_carry_reasons(get_method_class(name))


def test_a_method_without_reasons_breaks_the_contract():
    """The contract is not vacuous: a method whose failures say nothing is caught."""
    from smoacs_bench.methods.base import Method, Proposal

    class Silent(Method):
        name = "silent"

        def propose(self, task, n_samples, seed):
            return [Proposal(None) for _ in range(n_samples)]

    with pytest.raises(AssertionError, match="without a reason"):
        check_method(Silent, options={})
