"""External tools the export tests run (cc, Icarus Verilog, Yosys): a test that needs a missing
tool skips and says which, except with PYLGN_REQUIRE_TOOLS=1 (set by .ci/run), where it fails:
in CI a missing tool must not turn export tests into silent skips."""
import functools
import os
import shutil

import pytest

WHY = {"cc": "no C compiler (cc) on PATH: the C export is not compiled",
       "iverilog": "Icarus Verilog not installed (apt-get install iverilog): Verilog not simulated",
       "vvp": "Icarus Verilog not installed (apt-get install iverilog): Verilog not simulated",
       "yosys": "Yosys not installed (apt-get install yosys): synthesis not run"}


def required():
    return os.environ.get("PYLGN_REQUIRE_TOOLS", "") not in ("", "0")


def _missing(tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return None
    return "; ".join(dict.fromkeys(WHY.get(t, f"{t} not on PATH") for t in missing))


def need(*tools):
    """Inside a test: skip (fail with PYLGN_REQUIRE_TOOLS=1) when a tool is missing."""
    why = _missing(tools)
    if why is None:
        return
    if required():
        pytest.fail(f"{why} (PYLGN_REQUIRE_TOOLS=1: a missing tool fails)", pytrace=False)
    pytest.skip(why)


def needs(*tools):
    """Decorator form of ``need``."""
    def decorate(test):
        if _missing(tools) is None:
            return test

        @functools.wraps(test)
        def run(*args, **kwargs):
            need(*tools)
        return run
    return decorate
