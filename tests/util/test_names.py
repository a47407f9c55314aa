"""Output file names made from input names: safe, and never shared by two inputs."""

import pytest

from util.errors import DataError
from util.names import (
    prediction_file_name,
    safe_name,
    std_file_name,
    unique_output_names,
)


def test_safe_names_keep_plain_ids_and_replace_the_rest():
    assert safe_name("PT003") == "PT003"
    assert safe_name("PT 1/../x") == "PT_1___x"
    assert prediction_file_name("PT 1") == "PT_1_fake_B.nii.gz"
    assert std_file_name("PT 1") == "PT_1_fake_B_std.nii.gz"


def test_distinct_names_map_one_to_one():
    sources = {"PT 1": "testA/PT 1.nii.gz", "PT2": "testA/PT2.nii.gz"}
    assert unique_output_names(sources, prediction_file_name) == {
        "PT 1": "PT_1_fake_B.nii.gz", "PT2": "PT2_fake_B.nii.gz"}


def test_a_collision_names_both_inputs_and_the_shared_name():
    sources = {"PT 1": "testA/PT 1.nii.gz", "PT_1": "testA/PT_1.nii.gz"}
    with pytest.raises(DataError) as info:
        unique_output_names(sources, prediction_file_name)
    message = str(info.value)
    assert "testA/PT 1.nii.gz" in message
    assert "testA/PT_1.nii.gz" in message
    assert "PT_1_fake_B.nii.gz" in message
    assert "\n" not in message


def test_names_differing_only_in_case_collide_and_every_collision_is_listed():
    sources = {"a": "A/a.nii", "A": "A/A.nii", "b c": "A/b c.nii", "b_c": "A/b_c.nii",
               "b?c": "A/b?c.nii"}
    with pytest.raises(DataError) as info:
        unique_output_names(sources, safe_name)
    message = str(info.value)
    assert "3 output name collisions" in message
    for path in sources.values():
        assert path in message


@pytest.mark.parametrize(("raw", "safe"), [
    ("../x", "__x"), ("a/b\\c", "a_b_c"), ("..", "_"), (".hidden", "hidden"),
    ("pt 01_slice003", "pt_01_slice003"), ("v1.2-x", "v1.2-x")])
def test_safe_name(raw, safe):
    assert safe_name(raw) == safe


@pytest.mark.parametrize("raw", ["", "."])
def test_safe_name_refuses_nothing_usable(raw):
    with pytest.raises(DataError, match="nothing usable"):
        safe_name(raw)
