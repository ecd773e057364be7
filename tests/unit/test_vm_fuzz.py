"""Grammar fuzzing of the VM (tests/vm_grammar.py): hostile programs never break it.

Hypothesis draws programs over every builtin, method and operator, with strings of every UTF-8
width, big integers and containers at the caps. Each must load or be refused with InvalidContract,
then run to a value or a ContractError that is not a VM failure, within the time and the memory its
gas pays for.
A longer run outside CI: scripts/fuzz_vm.py.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, target

from tests.vm_grammar import EXTREME_OPERATIONS, SWEEP_GAS, check_program, extreme_cases, programs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs())
def test_no_program_breaks_the_vm(source):
    target(check_program(source).ns_per_gas, label="ns per gas")


@pytest.mark.parametrize("operation, kinds", EXTREME_OPERATIONS, ids=[f"{op if len(op) < 40 else op[:36] + '...'} [{kinds}]" for op, kinds in EXTREME_OPERATIONS])
def test_every_operation_at_the_caps_costs_no_more_than_its_gas_pays_for(operation, kinds):
    """The catalog swept deterministically, so every builtin, method and operator meets values at the
    caps in every CI run, not only when the random draw happens to reach them."""
    for source in extreme_cases(operation, kinds):
        check_program(source, SWEEP_GAS)
