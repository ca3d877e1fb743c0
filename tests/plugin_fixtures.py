"""Source of fake plugins used by the registry tests (written into temporary dist-infos)."""

GOOD = '''
from toolkit_core import hookimpl
from toolkit_core.methods import Metric


class Zero(Metric):
    name = "fake_zero"
    summary = "Always zero."
    citation = "arXiv:0000.00000"
    higher_is_better = {"zero": True}

    def __init__(self, offset: float = 0.0, mode: str = "a"):
        self.offset, self.mode = offset, mode

    def compute(self, model, data):
        return {"zero": 0.0 + self.offset}


@hookimpl
def torchtrust_register_metrics(register):
    register(Zero)
'''

BROKEN_IMPORT = '''
raise ImportError("this plugin needs a package that is not installed")
'''

HOOK_RAISES = '''
from toolkit_core import hookimpl
from toolkit_core.methods import Metric


class Partial(Metric):
    name = "fake_partial"
    summary = "Registered before the hook raised."
    citation = "arXiv:0000.00000"

    def compute(self, model, data):
        return {}


@hookimpl
def torchtrust_register_metrics(register):
    register(Partial)
    raise RuntimeError("boom")
'''

DUPLICATE = '''
from toolkit_core import hookimpl
from toolkit_core.methods import Metric


class Other(Metric):
    name = "fake_zero"
    summary = "Same name as the good plugin."
    citation = "arXiv:0000.00000"

    def compute(self, model, data):
        return {}


class Unique(Metric):
    name = "fake_unique"
    summary = "A name nobody else uses."
    citation = "arXiv:0000.00000"

    def compute(self, model, data):
        return {}


@hookimpl
def torchtrust_register_metrics(register):
    register(Other)
    register(Unique)
'''

BAD_CLASS = '''
from toolkit_core import hookimpl


class NotAMethod:
    name = "fake_bad"


@hookimpl
def torchtrust_register_metrics(register):
    register(NotAMethod)
'''

WRONG_KIND = '''
from toolkit_core import hookimpl
from toolkit_core.methods import Attack


class Sneaky(Attack):
    name = "fake_sneaky"
    summary = "An attack registered through the metric hook."
    citation = "arXiv:0000.00000"


@hookimpl
def torchtrust_register_metrics(register):
    register(Sneaky)
'''
