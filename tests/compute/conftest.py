from __future__ import annotations

import pytest

from mlplatform.graph import Graph
from mlplatform.plan import run_program
from tests.compute.stacks import DEV, PROD, program


@pytest.fixture(scope="session")
def dev() -> Graph:
    return run_program(program(DEV), stack="dev")


@pytest.fixture(scope="session")
def prod() -> Graph:
    return run_program(program(PROD), stack="prod")
