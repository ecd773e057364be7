"""Grammar fuzzing of the VM (tests/vm_grammar.py): hostile programs never break it.

Hypothesis draws programs over every builtin, method and operator, with strings of every UTF-8
width, big integers and containers at the caps. Each must load or be refused with InvalidContract,
then run to a value or a ContractError that is not a VM failure, within the time its gas pays for.
A longer run outside CI: scripts/fuzz_vm.py.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.vm_grammar import check_program, programs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs())
def test_no_program_breaks_the_vm(source):
    check_program(source)
