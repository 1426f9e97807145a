"""Outlines: an edit keeps a module's declarations only when import time cannot see it."""

from __future__ import annotations

import textwrap

import pytest

from pipeline.core import outline

STAGE = '''
from hydra_zen import builds
from pipeline.spec import StageSpec
from stages import models
from stages.models import cnn as conv_net


def train(out, lr: float = 0.003) -> dict:
    """Train."""
    return {"lr": lr}


def _model_config(factory, **kwargs):
    return builds(factory, populate_full_signature=True, **kwargs)


def _calls(factory):
    return factory()


SPEC = StageSpec(
    name="train",
    task=train,
    config=builds(train, populate_full_signature=True),
    groups={"model": {"mlp": _model_config(models.mlp)}},
)

if __name__ == "__main__":
    train("out")
'''

MODELS = """
def mlp(width: int = 8):
    return [width]


def cnn(width: int = 8):
    return [width]


class Net:
    def __init__(self, width: int = 8):
        self.width = width

    def forward(self, x):
        return x
"""


def _same(before: dict[str, str], after: dict[str, str]) -> bool:
    old = {p: outline.outline(textwrap.dedent(s)) for p, s in before.items()}
    new = {p: outline.outline(textwrap.dedent(s)) for p, s in after.items()}
    return outline.same_declarations(old, new)


def _edit(old: str, new: str, where: str = "train.py", extra: str = "") -> bool:
    """Whether the two sources, with `old` replaced by `new` in `where`, declare the same."""
    files = {"train.py": STAGE + extra, "models.py": MODELS}
    edited = dict(files)
    assert old in edited[where], old
    edited[where] = edited[where].replace(old, new)
    return _same(files, edited)


def test_an_edit_inside_the_task_keeps_the_declarations() -> None:
    assert _edit('return {"lr": lr}', 'return {"lr": lr * 2}')
    assert _edit('"""Train."""\n    return', '"""Train."""\n    x = 1\n    return')


def test_an_edit_of_a_model_passed_to_a_storing_helper_keeps_them() -> None:
    assert _edit("return [width]\n\n\ndef cnn", "return [width, 1]\n\n\ndef cnn", "models.py")


def test_a_signature_a_constant_or_the_spec_changes_them() -> None:
    assert not _edit("lr: float = 0.003", "lr: float = 0.01")
    assert not _edit('name="train"', 'name="training"')
    assert not _edit("def mlp(width: int = 8)", "def mlp(width: int = 9)", "models.py")


def test_a_helper_import_time_calls_changes_them_when_its_body_does() -> None:
    assert not _edit("populate_full_signature=True, **kwargs)", "**kwargs)")


def test_a_function_import_time_may_call_changes_them() -> None:
    called = "\nVALUE = _calls(models.cnn)\n"
    assert not _edit(
        "return [width]\n\n\nclass", "return [width, 2]\n\n\nclass", "models.py", called
    )
    aliased = "\nVALUE = conv_net()\n"
    assert not _edit(
        "return [width]\n\n\nclass", "return [width, 2]\n\n\nclass", "models.py", aliased
    )
    made = "\nNET = models.Net()\n"
    assert not _edit("return x", "return x + 1", "models.py", made)
    listed = "\nFACTORIES = [models.cnn]\n"
    assert not _edit(
        "return [width]\n\n\nclass", "return [width, 2]\n\n\nclass", "models.py", listed
    )


def test_a_method_of_a_class_only_handed_to_builds_keeps_them() -> None:
    handed = "\nNET = builds(models.Net)\n"
    assert _edit("return x", "return x + 1", "models.py", handed)


def test_implicitly_run_dunders_and_the_main_block() -> None:
    assert not _edit("self.width = width", "self.width = width + 1", "models.py")
    assert not _edit('train("out")', 'train("other")')  # the block itself is declared
    package = "def __getattr__(name):\n    return 1\n"
    assert not _same({"p.py": package}, {"p.py": package.replace("1", "2")})


def test_files_added_or_removed_change_them() -> None:
    assert not _same({"a.py": "X = 1\n"}, {"a.py": "X = 1\n", "b.py": "Y = 2\n"})


def test_an_outline_survives_json() -> None:
    item = outline.outline(STAGE)
    assert outline.from_json(item.to_json()) == item
    with pytest.raises((TypeError, KeyError)):
        outline.from_json({"digest": "x", "passed": [[1, 2]]})
