"""Predicting every phase of a cycle: MIP and synthetic AVG."""

import numpy as np
import pytest
import torch

from models.cycle import CyclePrediction, predict_cycle
from models.inference import StackPrediction
from models.settings import GeneratorSettings
from models.trained_run import TrainedGenerator, build_generator
from util.errors import ConfigError
from util.phases import STANDARD_PHASES


def test_mip_and_mean_over_the_phases():
    a = np.array([[[0.0, 10.0]]], dtype=np.float32)
    b = np.array([[[20.0, -10.0]]], dtype=np.float32)
    cycle = CyclePrediction({0.0: StackPrediction(a), 50.0: StackPrediction(b)})
    np.testing.assert_array_equal(cycle.mip_hu(), [[[20.0, 10.0]]])
    np.testing.assert_array_equal(cycle.mean_hu(), [[[10.0, 0.0]]])
    assert not cycle.whole_cycle


def test_a_conditioned_generator_predicts_each_phase_differently(tmp_path):
    torch.manual_seed(0)
    settings = GeneratorSettings(netG="unet_64", ngf=4, input_nc=3, phase_input=True)
    generator = TrainedGenerator(build_generator(settings).eval(), settings, tmp_path / "g",
                                 torch.device("cpu"))
    stack = np.random.default_rng(0).uniform(-1000, 500, (2, 64, 64)).astype(np.float32)
    cycle = predict_cycle(generator, stack, STANDARD_PHASES, batch_size=2)
    assert cycle.whole_cycle
    assert list(cycle.phases) == list(STANDARD_PHASES)
    assert not np.array_equal(cycle.phases[0.0].hu, cycle.phases[50.0].hu)
    np.testing.assert_array_equal(cycle.phases[0.0].hu, generator.predict(stack).hu)


def test_a_phase_0_generator_cannot_make_a_cycle(tmp_path):
    settings = GeneratorSettings(netG="unet_64", ngf=4)
    generator = TrainedGenerator(build_generator(settings).eval(), settings, tmp_path / "g",
                                 torch.device("cpu"))
    with pytest.raises(ConfigError, match="phase 0 only"):
        predict_cycle(generator, np.zeros((1, 64, 64), np.float32), (0.0, 50.0))


def test_every_volume_of_a_cycle_has_its_own_series_number_and_a_whole_description():
    from data.dicom_write import series_description
    from models.cycle import cycle_volumes
    from util.phases import STANDARD_PHASES

    for phases in (STANDARD_PHASES, (0.0, 50.0), (0.0, 0.4, 99.6)):
        volumes = cycle_volumes(phases)
        assert len({v.series_offset for v in volumes}) == len(volumes)
    for v in cycle_volumes(STANDARD_PHASES) + cycle_volumes((0.0, 50.0)):
        assert series_description(v.description, "phase0_recipe best").endswith(
            "(pix2pix phase0_recipe best)")  # the model's name survives the 64-character cut
    kinds = [v.kind for v in cycle_volumes(STANDARD_PHASES)]
    assert kinds[-2:] == ["mip", "avg"]
    assert [v.kind for v in cycle_volumes((0.0, 50.0))][-2:] == ["mip", "mean"]
    assert [v.kind for v in cycle_volumes((50.0,))] == [50.0]
