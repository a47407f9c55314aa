"""Settings named like options: picked from option values, written back as opt.json spells them."""

import math
from dataclasses import dataclass, field

import pytest

from util.errors import ConfigError
from util.settings import option_name, settings_from_options, settings_to_json


@dataclass(frozen=True, kw_only=True)
class Example:
    dataroot: str
    size: tuple[int, ...] = (0, 0)
    most: float = math.inf
    is_train: bool = field(default=False, metadata={"option": "isTrain"})
    note: str | None = None


def test_fields_are_picked_by_option_name_and_the_rest_ignored():
    options = {"dataroot": "/d", "size": [3, 4], "most": None, "isTrain": True, "note": "x",
               "is_train": False, "other": 1}
    assert settings_from_options(Example, options) == Example(
        dataroot="/d", size=(3, 4), most=math.inf, is_train=True, note="x")


def test_missing_options_take_their_defaults_and_a_required_one_is_named():
    assert settings_from_options(Example, {"dataroot": "/d"}) == Example(dataroot="/d")
    with pytest.raises(ConfigError, match="Example needs the options --dataroot"):
        settings_from_options(Example, {"size": [1, 2]})


def test_json_spells_options_as_opt_json_does_and_reads_back():
    example = Example(dataroot="/d", size=(3, 4), is_train=True)
    written = settings_to_json(example)
    assert written == {"dataroot": "/d", "size": [3, 4], "most": None, "isTrain": True,
                       "note": None}
    assert settings_from_options(Example, written) == example
    assert settings_to_json(Example(dataroot="/d", most=2.5))["most"] == 2.5


def test_option_name_is_the_field_name_unless_the_metadata_says():
    names = {f.name: option_name(f) for f in Example.__dataclass_fields__.values()}
    assert names == {"dataroot": "dataroot", "size": "size", "most": "most",
                     "is_train": "isTrain", "note": "note"}
